#!/usr/bin/env python3
"""A real Kubernetes + Knative 1.18 control plane on one machine, for the cluster tests.

Test code, not product. Runs, inside the network namespace the caller made for it
(`unshare -n`; it refuses to run in the machine's own namespace):

  etcd 3.6, kube-apiserver and kube-controller-manager v1.36.3, Knative Serving's CRDs,
  RBAC and ConfigMaps, Knative's controller and autoscaler, the activator Deployment
  (Knative's, or Sluice's image in its place), and a stand-in kubelet that runs every
  pod bound to its Node as local processes in a network namespace of the pod's own.

  cluster.py up --dir D --bin BIN_DIR --activator sluice|knative --queue-proxy sluice|knative
               [--activators N] --sluice BIN --testapp BIN

When everything is up it writes D/ready (JSON: apiserver URL, token, CA file) and runs
until SIGTERM or SIGINT, then stops every process it started, by pid. SIGUSR1 restarts
the apiserver (for tests of watches that must survive it).

Addresses: the test namespace holds a bridge with 10.244.0.1/16 (the apiserver, the
autoscaler and the controller live there); each pod gets 10.244.1.N on a veth pair into
its own namespace. Nothing here ever leaves the caller's namespace.

What the stand-in kubelet does, as a kubelet would: binds unscheduled pods to its Node
(there is no scheduler), starts each container with exactly the env the pod spec gives
(fieldRefs resolved) plus the service-account files and KUBERNETES_SERVICE_*, probes
readiness (httpGet/tcpSocket) and patches pods/status (phase, startTime, podIP, Ready),
restarts a container that exits (restartPolicy Always), and on deletion runs preStop
httpGet hooks, sends SIGTERM, waits out the grace period, then SIGKILL. It does not do
liveness probes, resource limits, volumes other than the service account, or images: an
image name maps to a local binary (see IMAGES).
"""

import argparse
import glob
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import yaml

BRIDGE = 'cbr0'
HOST_IP = '10.244.0.1'  # the bridge: the apiserver listens here for pods
AUTOSCALER_IP = '10.244.0.2'
CONTROLLER_IP = '10.244.0.3'
API_PORT = 6443
NODE = 'sluice-node'
TOKEN = 'sluice-cluster-test-token'
CLUSTER_DOMAIN = 'cluster.local'

KNATIVE_QUEUE_IMAGE = 'ko://knative.dev/serving/cmd/queue'
KNATIVE_ACTIVATOR_IMAGE = 'ko://knative.dev/serving/cmd/activator'
# Sluice's one image (scripts/image-build.sh): entrypoint `sluice`, default args
# `queue-proxy`. deploy/base names it; the harness runs the binary under test for it.
SLUICE_IMAGE = 'dev.local/sluice'
DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'deploy', 'base')
TESTAPP_IMAGE = 'dev.local/sluice/testapp'


def log(*a):
    print('cluster:', *a, file=sys.stderr, flush=True)


def refuse_unless_own_netns():
    """Pod addresses (10.244.x.y) must never be used in the machine's namespace.

    A namespace of our own is one nobody configured: nothing but an unconfigured
    loopback. The machine's namespace (or anyone else's) has other interfaces or routes.
    """
    # Not /sys/class/net: sysfs shows the namespace that mounted it, not ours.
    ifaces = sorted(l.split(':')[1].strip().split('@')[0] for l in sh('ip -o link show').splitlines())
    routes = sh('ip -o route show table all 2>/dev/null | grep -v "^local \\|^broadcast \\|^multicast " || true').strip()
    if ifaces != ['lo'] or routes:
        sys.exit('cluster: refusing to start: this network namespace is not a fresh one of our own '
                 f'(interfaces {ifaces}, routes {routes!r}); run inside unshare -n, '
                 'or pod addresses would leave the machine')


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f'{cmd}: exit {r.returncode}: {r.stderr.strip()}')
    return r.stdout


class Api:
    """The apiserver over HTTPS with the admin token, verified against its CA."""

    def __init__(self, url, token, ca):
        self.url, self.token = url, token
        self.ctx = ssl.create_default_context(cafile=ca)

    def req(self, method, path, body=None, ctype='application/json', timeout=15):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + path, data=data, method=method,
                                   headers={'Authorization': 'Bearer ' + self.token, 'Content-Type': ctype})
        try:
            with urllib.request.urlopen(r, context=self.ctx, timeout=timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, _json(e.read())
        except (OSError, ssl.SSLError) as e:
            return 0, {'message': str(e)}

    def must(self, method, path, body=None, ctype='application/json', ok=(200, 201)):
        st, b = self.req(method, path, body, ctype)
        if st not in ok:
            raise RuntimeError(f'{method} {path}: {st} {str(b)[:300]}')
        return b


def _json(b):
    try:
        return json.loads(b or b'{}')
    except ValueError:
        return {'text': b.decode(errors='replace')}


# apiVersion/kind -> collection path, for what the Knative manifests hold.
def collection(doc):
    api, kind = doc['apiVersion'], doc['kind']
    ns = doc.get('metadata', {}).get('namespace')
    plural = {
        'Namespace': 'namespaces', 'ConfigMap': 'configmaps', 'Secret': 'secrets',
        'ServiceAccount': 'serviceaccounts', 'Service': 'services', 'Deployment': 'deployments',
        'ClusterRole': 'clusterroles', 'ClusterRoleBinding': 'clusterrolebindings',
        'Role': 'roles', 'RoleBinding': 'rolebindings',
        'CustomResourceDefinition': 'customresourcedefinitions', 'Image': 'images',
        'PodDisruptionBudget': 'poddisruptionbudgets',
    }.get(kind)
    if plural is None:
        return None
    base = '/api/v1/' if api == 'v1' else f'/apis/{api}/'
    cluster_scoped = kind in ('Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition')
    return base + ('' if cluster_scoped or not ns else f'namespaces/{ns}/') + plural


def apply_docs(api, docs, transform=None):
    for doc in docs:
        if not doc:
            continue
        if transform:
            doc = transform(doc)
            if doc is None:
                continue
        path = collection(doc)
        if path is None:
            log('skipping', doc['kind'], doc['metadata'].get('name'))
            continue
        st, b = api.req('POST', path, doc)
        if st == 409:
            continue
        if st not in (200, 201):
            raise RuntimeError(f'apply {doc["kind"]} {doc["metadata"].get("name")}: {st} {str(b)[:300]}')


def load(path):
    with open(path) as f:
        return list(yaml.safe_load_all(f))


class Procs:
    """Every process the harness starts, stopped by pid."""

    def __init__(self, logdir):
        self.logdir, self.lock, self.all = logdir, threading.Lock(), []

    def start(self, name, argv, env=None, **kw):
        f = open(os.path.join(self.logdir, name + '.log'), 'ab')
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw)
        f.close()
        with self.lock:
            self.all.append((name, p))
        return p

    def stop_all(self):
        with self.lock:
            procs = list(reversed(self.all))
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for name, p in procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log('SIGKILL', name, p.pid)
                p.kill()
                p.wait()


def make_certs(d):
    """A CA and the apiserver's serving cert for every address a client uses."""
    sh(f'openssl ecparam -genkey -name prime256v1 -noout -out {d}/sa.key 2>/dev/null')
    sh(f'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 '
       f'-subj /CN=sluice-test-ca -keyout {d}/ca.key -out {d}/ca.crt 2>/dev/null')
    with open(f'{d}/san.cnf', 'w') as f:
        f.write('subjectAltName=IP:127.0.0.1,IP:10.244.0.1,IP:10.96.0.1,DNS:localhost,'
                'DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,'
                f'DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}\n')
    sh(f'openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=kube-apiserver '
       f'-keyout {d}/apiserver.key -out {d}/apiserver.csr 2>/dev/null')
    sh(f'openssl x509 -req -in {d}/apiserver.csr -CA {d}/ca.crt -CAkey {d}/ca.key -CAcreateserial '
       f'-days 2 -extfile {d}/san.cnf -out {d}/apiserver.crt 2>/dev/null')


def wait_for(what, fn, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError(f'{what}: not within {timeout} s')


class Kubelet:
    """The stand-in kubelet (see the module comment)."""

    def __init__(self, api, procs, d, images, hosts_file):
        self.api, self.procs, self.dir, self.images, self.hosts = api, procs, d, images, hosts_file
        self.pods = {}  # uid -> Pod
        self.next_ip = 2
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def register_node(self):
        self.api.must('POST', '/api/v1/nodes', {'apiVersion': 'v1', 'kind': 'Node', 'metadata': {
            'name': NODE, 'labels': {'kubernetes.io/hostname': NODE}}}, ok=(200, 201, 409))
        now = _now()
        self.api.must('PATCH', f'/api/v1/nodes/{NODE}/status', {'status': {
            'capacity': {'cpu': '64', 'memory': '256Gi', 'pods': '500'},
            'allocatable': {'cpu': '64', 'memory': '256Gi', 'pods': '500'},
            'addresses': [{'type': 'InternalIP', 'address': HOST_IP}, {'type': 'Hostname', 'address': NODE}],
            'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'KubeletReady',
                            'lastHeartbeatTime': now, 'lastTransitionTime': now}]}},
            ctype='application/merge-patch+json')

    def run(self):
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception:
                log('kubelet sync failed:', traceback.format_exc())
            self.stopping.wait(0.2)

    def sync(self):
        st, lst = self.api.req('GET', '/api/v1/pods')
        if st != 200:
            return
        seen = set()
        for pod in lst.get('items', []):
            md, spec = pod['metadata'], pod['spec']
            uid = md['uid']
            seen.add(uid)
            name, ns = md['name'], md['namespace']
            deleting = 'deletionTimestamp' in md
            if not spec.get('nodeName'):
                if not deleting:
                    self.api.req('POST', f'/api/v1/namespaces/{ns}/pods/{name}/binding', {
                        'apiVersion': 'v1', 'kind': 'Binding', 'metadata': {'name': name},
                        'target': {'apiVersion': 'v1', 'kind': 'Node', 'name': NODE}})
                else:
                    self.api.req('DELETE', f'/api/v1/namespaces/{ns}/pods/{name}',
                                 {'gracePeriodSeconds': 0, 'preconditions': {'uid': uid}})
                continue
            if spec['nodeName'] != NODE:
                continue
            with self.lock:
                p = self.pods.get(uid)
                if p is None and not deleting:
                    ip = f'10.244.{1 + self.next_ip // 250}.{2 + self.next_ip % 250}'
                    self.next_ip += 1
                    p = self.pods[uid] = Pod(self, pod, ip)
                    threading.Thread(target=p.start, daemon=True).start()
            if deleting:
                if p is None:
                    self.api.req('DELETE', f'/api/v1/namespaces/{ns}/pods/{name}',
                                 {'gracePeriodSeconds': 0, 'preconditions': {'uid': uid}})
                elif not p.terminating:
                    p.terminating = True
                    grace = md.get('deletionGracePeriodSeconds', spec.get('terminationGracePeriodSeconds', 30))
                    threading.Thread(target=p.terminate, args=(grace,), daemon=True).start()
        with self.lock:
            gone = [p for uid, p in self.pods.items() if uid not in seen]
        for p in gone:  # force-deleted: stop at once
            if not p.terminating:
                p.terminating = True
                threading.Thread(target=p.terminate, args=(0,), daemon=True).start()

    def forget(self, uid):
        with self.lock:
            self.pods.pop(uid, None)

    def stop(self):
        self.stopping.set()
        with self.lock:
            pods = list(self.pods.values())
        threads = []
        for p in pods:
            t = threading.Thread(target=p.kill_all, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(15)


def _now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


class Sandbox:
    """A network and mount namespace of its own, as a pod's: one veth into the bridge with
    its address, /run a fresh tmpfs holding the service-account files, /etc/hosts naming
    the in-cluster services. A holder process keeps the namespaces alive."""

    def __init__(self, procs, name, ip, hosts, sa_dir):
        self.procs, self.name, self.ip = procs, name, ip
        os.makedirs(sa_dir, exist_ok=True)
        script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && '
                  f'mount --bind {sa_dir} /run/secrets/kubernetes.io/serviceaccount && '
                  f'mount --bind {hosts} /etc/hosts && ip link set lo up && exec sleep 1000000')
        self.holder = procs.start(f'{name}-sandbox', [
            'unshare', '-n', '-m', '--propagation', 'private', '--', 'sh', '-c', script])
        wait_for('sandbox', lambda: self.holder.poll() is not None or _is_sleeping(self.holder.pid), 10)
        if self.holder.poll() is not None:
            raise RuntimeError(f'sandbox {name} exited {self.holder.returncode}')
        n = ip.split('.')
        host_if, inner = f'vh{n[2]}x{n[3]}', f'vp{n[2]}x{n[3]}'
        sh(f'ip link add {host_if} type veth peer name {inner}')
        sh(f'ip link set {host_if} master {BRIDGE} up')
        sh(f'ip link set {inner} netns {self.holder.pid}')
        sh(f'nsenter -t {self.holder.pid} -n sh -c "ip link set {inner} name eth0 && '
           f'ip addr add {ip}/16 dev eth0 && ip link set eth0 up && ip route add default via {HOST_IP}"')

    def run(self, name, argv, env, cwd=None):
        return self.procs.start(name, ['nsenter', '-t', str(self.holder.pid), '-n', '-m', '--'] + argv,
                                env=env, cwd=cwd)

    def kill(self):
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()


class Pod:
    def __init__(self, kubelet, pod, ip):
        self.k, self.obj, self.ip = kubelet, pod, ip
        md = pod['metadata']
        self.uid, self.name, self.ns = md['uid'], md['name'], md['namespace']
        self.tag = f'{self.ns}_{self.name}'
        self.dir = os.path.join(kubelet.dir, 'pods', self.tag)
        self.sandbox = None
        self.containers = {}  # name -> {'proc', 'ready', 'restarts', 'spec', 'started'}
        self.terminating = False
        self.lock = threading.Lock()
        self.start_time = _now()
        self.status_sent = None

    # --- set-up --------------------------------------------------------------------
    def start(self):
        try:
            self._sandbox()
            for c in self.obj['spec']['containers']:
                self._run_container(c, restarts=0)
            self._patch_status()
            self._supervise()
        except Exception:
            log(f'pod {self.tag}: start failed:', traceback.format_exc())

    def _sandbox(self):
        os.makedirs(self.dir + '/sa', exist_ok=True)
        self._write_sa()
        self.sandbox = Sandbox(self.k.procs, f'pod-{self.tag}', self.ip, self.k.hosts, self.dir + '/sa')

    def _write_sa(self):
        sa = self.obj['spec'].get('serviceAccountName') or 'default'
        st, b = self.k.api.req('POST', f'/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token',
                               {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest',
                                'spec': {'expirationSeconds': 3600}})
        token = b.get('status', {}).get('token', '') if st in (200, 201) else ''
        if not token and sa != 'default':
            log(f'pod {self.tag}: no token for service account {sa}: {st} {str(b)[:200]}')
        for name, text in (('token', token), ('namespace', self.ns),
                           ('ca.crt', open(self.k.dir + '/ca.crt').read())):
            tmp = f'{self.dir}/sa/.{name}'
            with open(tmp, 'w') as f:
                f.write(text)
            os.replace(tmp, f'{self.dir}/sa/{name}')

    def _env(self, c):
        md = self.obj['metadata']
        fields = {
            'metadata.name': self.name, 'metadata.namespace': self.ns, 'metadata.uid': self.uid,
            'status.podIP': self.ip, 'status.podIPs': self.ip, 'status.hostIP': HOST_IP,
            'status.hostIPs': HOST_IP, 'spec.nodeName': NODE,
            'spec.serviceAccountName': self.obj['spec'].get('serviceAccountName', 'default'),
        }
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOSTNAME': self.name,
               'KUBERNETES_SERVICE_HOST': HOST_IP, 'KUBERNETES_SERVICE_PORT': str(API_PORT),
               'KUBERNETES_SERVICE_PORT_HTTPS': str(API_PORT)}
        for e in c.get('env', []):
            if 'value' in e:
                env[e['name']] = e['value']
            elif 'valueFrom' in e:
                vf = e['valueFrom']
                if 'fieldRef' in vf:
                    path = vf['fieldRef']['fieldPath']
                    if path.startswith('metadata.labels['):
                        env[e['name']] = md.get('labels', {}).get(path[17:-2], '')
                    elif path.startswith('metadata.annotations['):
                        env[e['name']] = md.get('annotations', {}).get(path[22:-2], '')
                    else:
                        env[e['name']] = fields[path]
                elif 'resourceFieldRef' in vf:
                    env[e['name']] = '0'
                else:
                    raise RuntimeError(f'env {e["name"]}: unsupported valueFrom {vf}')
            else:
                env[e['name']] = ''  # Kubernetes drops an empty value field: the variable is set, empty
        return env

    def _argv(self, c):
        image = c['image'].split('@')[0]
        base = image.rsplit(':', 1)[0] if ':' in image.rsplit('/', 1)[-1] else image
        if base not in self.k.images:
            raise RuntimeError(f'container {c["name"]}: no local binary for image {c["image"]}')
        entry, cmd = self.k.images[base]
        # An image's entrypoint and default args, as a container runtime combines them:
        # `command` replaces the entrypoint (and its default args), `args` the args.
        if c.get('command'):
            argv = list(c['command'])
            if not os.path.isabs(argv[0]):
                argv[0] = entry[0] if os.path.basename(entry[0]) == argv[0] else argv[0]
            return argv + list(c.get('args', []))
        return list(entry) + list(c['args'] if 'args' in c else cmd)

    def _run_container(self, c, restarts):
        argv = self._argv(c)
        self.first_start = getattr(self, 'first_start', None) or time.time()
        p = self.sandbox.run(f'pod-{self.tag}-{c["name"]}', argv, self._env(c), cwd=self.dir)
        with self.lock:
            self.containers[c['name']] = {'proc': p, 'ready': not c.get('readinessProbe'), 'spec': c,
                                          'restarts': restarts, 'started': _now(), 'ok': 0, 'fail': 0,
                                          'next_probe': 0.0}
            pids = {name: x['proc'].pid for name, x in self.containers.items()}
        with open(self.dir + '/pids.json.tmp', 'w') as f:  # for tests that kill a pod's processes
            json.dump({'ip': self.ip, 'pids': pids, 'started': self.first_start}, f)
        os.replace(self.dir + '/pids.json.tmp', self.dir + '/pids.json')

    # --- running -------------------------------------------------------------------
    def _supervise(self):
        sa_written = time.time()
        while not self.terminating and not self.k.stopping.is_set():
            now = time.time()
            with self.lock:
                items = list(self.containers.items())
            for name, c in items:
                if self.terminating:
                    break
                if c['proc'].poll() is not None:  # exited: restartPolicy Always
                    log(f'pod {self.tag}: container {name} exited {c["proc"].returncode}; restarting')
                    time.sleep(min(10, 0.5 * (2 ** c['restarts'])))
                    if not self.terminating:
                        self._run_container(c['spec'], c['restarts'] + 1)
                    continue
                probe = c['spec'].get('readinessProbe')
                if probe and now >= c['next_probe']:
                    ok = self._probe(c['spec'], probe)
                    period = probe.get('periodSeconds', 10)
                    # Until the first success probe often (a kubelet's first probe comes at
                    # once); after that at the pod's own period, capped at 1 s for the tests.
                    c['next_probe'] = now + (min(period, 1.0) if c['ready'] else 0.1)
                    if ok:
                        c['ok'], c['fail'] = c['ok'] + 1, 0
                        if c['ok'] >= probe.get('successThreshold', 1):
                            c['ready'] = True
                    else:
                        c['ok'], c['fail'] = 0, c['fail'] + 1
                        if c['fail'] >= probe.get('failureThreshold', 3) or not c['ready']:
                            c['ready'] = False
            if now - sa_written > 600:  # the token rotates, as a kubelet's projected volume does
                self._write_sa()
                sa_written = now
            self._patch_status()
            time.sleep(0.05)

    def _port(self, c, port):
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for cc in self.obj['spec']['containers']:
            for p in cc.get('ports', []):
                if p.get('name') == port:
                    return p['containerPort']
        raise RuntimeError(f'no port named {port}')

    def _probe(self, c, probe):
        timeout = probe.get('timeoutSeconds', 1)
        try:
            if 'httpGet' in probe:
                g = probe['httpGet']
                port = self._port(c, g['port'])
                url = f'{g.get("scheme", "HTTP").lower()}://{g.get("host") or self.ip}:{port}{g.get("path") or "/"}'
                headers = {'User-Agent': 'kube-probe/1.36'}
                for h in g.get('httpHeaders', []):
                    headers[h['name']] = h['value']
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
                    return 200 <= r.status < 400
            if 'tcpSocket' in probe:
                with socket.create_connection((self.ip, self._port(c, probe['tcpSocket']['port'])), timeout):
                    return True
            return True  # exec and grpc probes: not run by this stand-in
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def _patch_status(self):
        with self.lock:
            items = list(self.containers.items())
        statuses, all_ready = [], True
        for name, c in items:
            running = c['proc'].poll() is None
            ready = running and c['ready'] and not self.terminating
            all_ready = all_ready and ready
            state = ({'running': {'startedAt': c['started']}} if running else
                     {'terminated': {'exitCode': c['proc'].returncode or 0, 'finishedAt': _now(), 'reason': 'Error'}})
            statuses.append({'name': name, 'ready': ready, 'started': running, 'restartCount': c['restarts'],
                             'image': c['spec']['image'], 'imageID': '', 'containerID': f'local://{c["proc"].pid}',
                             'state': state})
        all_ready = all_ready and len(items) == len(self.obj['spec']['containers'])
        cond = 'True' if all_ready else 'False'
        status = {'phase': 'Running', 'hostIP': HOST_IP, 'hostIPs': [{'ip': HOST_IP}], 'podIP': self.ip,
                  'podIPs': [{'ip': self.ip}], 'startTime': self.start_time,
                  'conditions': [{'type': t, 'status': s} for t, s in (
                      ('PodScheduled', 'True'), ('Initialized', 'True'), ('ContainersReady', cond), ('Ready', cond))],
                  'containerStatuses': statuses}
        key = json.dumps([cond, [(s['name'], s['ready'], s['restartCount'], s['started']) for s in statuses]])
        if key == self.status_sent:
            return
        now = _now()
        for c in status['conditions']:
            c['lastTransitionTime'] = now
        st, b = self.k.api.req('PATCH', f'/api/v1/namespaces/{self.ns}/pods/{self.name}/status',
                               {'status': status}, ctype='application/merge-patch+json')
        if st == 200:
            self.status_sent = key
        elif st != 404:
            log(f'pod {self.tag}: status patch: {st} {str(b)[:200]}')

    # --- tear-down -----------------------------------------------------------------
    def terminate(self, grace):
        """preStop hooks, SIGTERM, the grace period, SIGKILL; then the pod object goes."""
        deadline = time.time() + grace
        self._patch_status()
        hooks = []
        with self.lock:
            items = list(self.containers.values())
        for c in items:
            hook = c['spec'].get('lifecycle', {}).get('preStop', {}).get('httpGet')
            if hook:
                t = threading.Thread(target=self._prestop, args=(c, hook, grace), daemon=True)
                t.start()
                hooks.append((c, t))
        for c in items:
            if not any(h[0] is c for h in hooks):
                _signal(c['proc'], signal.SIGTERM)
        for c, t in hooks:
            t.join(max(0, deadline - time.time()))
            _signal(c['proc'], signal.SIGTERM)
        for c in items:
            try:
                c['proc'].wait(max(0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f'pod {self.tag}: {c["spec"]["name"]} outlived its grace period of {grace} s: SIGKILL')
                c['proc'].kill()
                c['proc'].wait()
        self._teardown()
        self.k.api.req('DELETE', f'/api/v1/namespaces/{self.ns}/pods/{self.name}',
                       {'gracePeriodSeconds': 0, 'preconditions': {'uid': self.uid}})
        self.k.forget(self.uid)

    def _prestop(self, c, hook, grace):
        url = f'http://{self.ip}:{self._port(c["spec"], hook["port"])}{hook.get("path") or "/"}'
        try:
            urllib.request.urlopen(url, timeout=max(1, grace)).read()
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def kill_all(self):
        self.terminating = True
        with self.lock:
            items = list(self.containers.values())
        for c in items:
            _signal(c['proc'], signal.SIGTERM)
        for c in items:
            try:
                c['proc'].wait(5)
            except subprocess.TimeoutExpired:
                c['proc'].kill()
                c['proc'].wait()
        self._teardown()

    def _teardown(self):
        if self.sandbox:
            self.sandbox.kill()


def _signal(p, sig):
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def _is_sleeping(pid):
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip() == 'sleep'
    except OSError:
        return False


def up(args):
    refuse_unless_own_netns()
    d = os.path.abspath(args.dir)
    os.makedirs(d + '/logs', exist_ok=True)
    with open(d + '/pid', 'w') as f:  # `nsenter -t $(cat D/pid) -n` joins the cluster's namespace
        f.write(f'{os.getpid()}\n')
    bin_dir = args.bin
    serving = open(bin_dir + '/knative-serving-dir').read().strip()
    modcache = os.path.dirname(os.path.dirname(serving))
    networking = sorted(glob.glob(modcache + '/knative.dev/networking@*'))[-1]
    caching = sorted(glob.glob(modcache + '/knative.dev/caching@*'))[-1]
    procs = Procs(d + '/logs')
    kubelet = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    t0 = time.time()
    try:
        sh('ip link set lo up')
        sh(f'ip link add {BRIDGE} type bridge && ip addr add {HOST_IP}/16 dev {BRIDGE} && ip link set {BRIDGE} up')
        make_certs(d)
        with open(d + '/tokens.csv', 'w') as f:
            f.write(f'{TOKEN},sluice-admin,1,"system:masters"\n')
        procs.start('etcd', [bin_dir + '/etcd', '--data-dir', d + '/etcd', '--listen-client-urls',
                             'http://127.0.0.1:2379', '--advertise-client-urls', 'http://127.0.0.1:2379',
                             '--listen-peer-urls', 'http://127.0.0.1:2380', '--log-level=warn'])
        apiserver_argv = [
            bin_dir + '/kube-apiserver', '--etcd-servers=http://127.0.0.1:2379', '--bind-address=0.0.0.0',
            f'--advertise-address={HOST_IP}', f'--secure-port={API_PORT}',
            f'--tls-cert-file={d}/apiserver.crt', f'--tls-private-key-file={d}/apiserver.key',
            f'--client-ca-file={d}/ca.crt', '--service-cluster-ip-range=10.96.0.0/24',
            '--service-account-issuer=https://kubernetes.default.svc',
            f'--service-account-key-file={d}/sa.key', f'--service-account-signing-key-file={d}/sa.key',
            f'--token-auth-file={d}/tokens.csv', '--authorization-mode=RBAC',
            '--disable-admission-plugins=ServiceAccount', '--allow-privileged=true']
        apiserver = [procs.start('kube-apiserver', apiserver_argv)]
        restart = threading.Event()  # SIGUSR1: restart the apiserver (tests of watches)
        signal.signal(signal.SIGUSR1, lambda *_: restart.set())
        api = Api(f'https://127.0.0.1:{API_PORT}', TOKEN, d + '/ca.crt')
        wait_for('apiserver /readyz', lambda: api.req('GET', '/readyz')[0] == 200, 120)
        log(f'apiserver ready after {time.time() - t0:.1f} s')
        kubeconfig = d + '/kubeconfig'
        with open(kubeconfig, 'w') as f:
            f.write(f'''apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "https://127.0.0.1:{API_PORT}", certificate-authority: "{d}/ca.crt"}}}}]
users: [{{name: admin, user: {{token: {TOKEN}}}}}]
contexts: [{{name: test, context: {{cluster: test, user: admin}}}}]
current-context: test
''')
        procs.start('kube-controller-manager', [
            bin_dir + '/kube-controller-manager', f'--kubeconfig={kubeconfig}', '--leader-elect=false',
            '--secure-port=0', f'--service-account-private-key-file={d}/sa.key', f'--root-ca-file={d}/ca.crt',
            '--use-service-account-credentials=false', '--controllers=*,-nodelifecycle'])

        # Knative Serving: CRDs first, then RBAC, service accounts and ConfigMaps.
        core = serving + '/config/core'
        apply_docs(api, load(core + '/100-namespace.yaml'))
        crds = []
        for f in sorted(glob.glob(core + '/300-resources/*.yaml')) + [
                networking + '/config/' + n for n in ('serverlessservice.yaml', 'certificate.yaml', 'ingress.yaml',
                                                       'domain-claim.yaml')] + [caching + '/config/image.yaml']:
            docs = load(f)
            crds += [x['metadata']['name'] for x in docs if x and x['kind'] == 'CustomResourceDefinition']
            apply_docs(api, docs)
        for name in crds:
            wait_for(f'CRD {name} established', lambda: any(
                c['type'] == 'Established' and c['status'] == 'True' for c in api.req(
                    'GET', f'/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}')[1].get(
                        'status', {}).get('conditions', [])), 60)
        apply_docs(api, load(core + '/200-serviceaccount.yaml'))
        for f in sorted(glob.glob(core + '/200-roles/*.yaml')):
            apply_docs(api, load(f))
        # Sluice's data plane as deploy/base turns a Knative install into one.
        deploy = {(x['kind'], x['metadata']['name']): x for f in glob.glob(DEPLOY + '/*.yaml')
                  for x in load(f) if x and 'kind' in x and x['kind'] != 'Kustomization'}

        def configmap(doc):
            if doc['kind'] == 'ConfigMap' and doc['metadata']['name'] == 'config-deployment':
                doc['data'] = (dict(deploy[('ConfigMap', 'config-deployment')]['data'])
                               if args.queue_proxy == 'sluice' else {'queue-sidecar-image': KNATIVE_QUEUE_IMAGE})
            if doc['kind'] == 'ConfigMap' and doc['metadata']['name'] in args.config:
                doc['data'] = dict(args.config[doc['metadata']['name']])
            return doc

        for f in sorted(glob.glob(core + '/configmaps/*.yaml')):
            apply_docs(api, load(f), configmap)
        apply_docs(api, load(networking + '/config/config-network.yaml'), configmap)

        hosts = d + '/hosts'
        # More than one autoscaler (Sluice's: one leads by a Lease): the Service's name
        # resolves to every replica, as a Service would reach any of them.
        autoscaler_ips = [AUTOSCALER_IP] + [f'10.244.0.{10 + i}' for i in range(1, args.autoscalers)]
        with open(hosts, 'w') as f:
            f.write('127.0.0.1 localhost\n'
                    + ''.join(f'{ip} autoscaler.knative-serving.svc.{CLUSTER_DOMAIN} autoscaler.knative-serving.svc\n'
                              for ip in autoscaler_ips) +
                    f'{HOST_IP} kubernetes.default.svc.{CLUSTER_DOMAIN} kubernetes.default.svc\n')
        images = {  # image -> (entrypoint, default args)
            KNATIVE_QUEUE_IMAGE: ([bin_dir + '/knative-queue'], []),
            KNATIVE_ACTIVATOR_IMAGE: ([bin_dir + '/knative-activator'], []),
            SLUICE_IMAGE: ([args.sluice], ['queue-proxy']),
            TESTAPP_IMAGE: ([args.testapp], []),
        }
        kubelet = Kubelet(api, procs, d, images, hosts)
        kubelet.register_node()
        threading.Thread(target=kubelet.run, daemon=True).start()

        # Knative's controller and autoscaler, each in a namespace of its own with its own
        # address, as their pods would be (they listen on the same ports).
        pod_kubeconfig = d + '/kubeconfig-pods'
        with open(kubeconfig) as f, open(pod_kubeconfig, 'w') as g:
            g.write(f.read().replace(f'https://127.0.0.1:{API_PORT}', f'https://{HOST_IP}:{API_PORT}'))
        env = dict(os.environ, SYSTEM_NAMESPACE='knative-serving',
                   CONFIG_LOGGING_NAME='config-logging', CONFIG_OBSERVABILITY_NAME='config-observability',
                   METRICS_DOMAIN='knative.dev/internal/serving')
        replicas = {}
        for i, ip in enumerate(autoscaler_ips):
            replicas[f'knative-autoscaler-{i}' if i else 'knative-autoscaler'] = (ip, f'autoscaler-{i}')
        replicas['knative-controller'] = (CONTROLLER_IP, 'controller-0')
        autoscaler_pids = {}
        for name, (ip, pod_name) in replicas.items():
            box = Sandbox(procs, name, ip, hosts, f'{d}/{name}-sa')
            pod_env = dict(env, POD_NAME=pod_name, POD_IP=ip)
            argv = [f'{bin_dir}/{name.rsplit("-", 1)[0] if name[-1].isdigit() else name}']
            if name.startswith('knative-autoscaler') and args.autoscaler == 'sluice':
                # Exactly what deploy/base/autoscaler.yaml's container runs with.
                c = deploy[('Deployment', 'autoscaler')]['spec']['template']['spec']['containers'][0]
                entry, cmd = images[c['image'].rsplit(':', 1)[0]]
                argv = entry + list(c.get('args', cmd))
                fields = {'metadata.name': pod_env['POD_NAME'], 'status.podIP': ip,
                          'metadata.namespace': 'knative-serving'}
                pod_env = dict(os.environ)
                for e in c.get('env', []):
                    pod_env[e['name']] = (fields[e['valueFrom']['fieldRef']['fieldPath']]
                                          if 'valueFrom' in e else e.get('value', ''))
            p = box.run(name, argv + [f'--kubeconfig={pod_kubeconfig}'], pod_env)
            if name.startswith('knative-autoscaler'):
                autoscaler_pids[pod_name] = {'pid': p.pid, 'ip': ip}
        with open(d + '/autoscalers.json', 'w') as f:  # the tests stop a replica by its pid
            json.dump(autoscaler_pids, f)

        def activator(doc):
            if doc['kind'] == 'Deployment':
                if args.activator == 'sluice':  # deploy/base/activator.yaml as it is
                    doc = json.loads(json.dumps(deploy[('Deployment', 'activator')]))
                else:
                    doc['spec']['template']['spec']['containers'][0]['image'] = KNATIVE_ACTIVATOR_IMAGE
                doc['spec']['replicas'] = args.activators
            return doc

        apply_docs(api, load(core + '/deployments/activator.yaml'), activator)

        def activators_ready():
            st, b = api.req('GET', '/apis/apps/v1/namespaces/knative-serving/deployments/activator')
            return st == 200 and b.get('status', {}).get('readyReplicas', 0) == args.activators
        wait_for('activator Deployment ready', activators_ready, 180)
        with open(d + '/ready.tmp', 'w') as f:
            json.dump({'apiserver': f'https://127.0.0.1:{API_PORT}', 'token': TOKEN, 'ca': d + '/ca.crt',
                       'kubeconfig': kubeconfig, 'host_ip': HOST_IP, 'activator': args.activator,
                       'queue_proxy': args.queue_proxy, 'autoscaler': args.autoscaler}, f)
        os.replace(d + '/ready.tmp', d + '/ready')
        log(f'cluster up after {time.time() - t0:.1f} s ({args.activator} activator, '
            f'{args.queue_proxy} queue-proxy, {args.autoscaler} autoscaler)')
        while not stop.is_set():
            if restart.is_set():
                restart.clear()
                log('restarting kube-apiserver')
                apiserver[0].send_signal(signal.SIGTERM)
                try:  # open watches hold a graceful shutdown for a minute: not waited out
                    apiserver[0].wait(10)
                except subprocess.TimeoutExpired:
                    apiserver[0].kill()
                    apiserver[0].wait()
                with procs.lock:
                    procs.all = [x for x in procs.all if x[1] is not apiserver[0]]
                apiserver[0] = procs.start('kube-apiserver', apiserver_argv)
                wait_for('apiserver /readyz after restart', lambda: api.req('GET', '/readyz')[0] == 200, 120)
                log('kube-apiserver restarted')
            for name, p in list(procs.all):
                # With several autoscalers a test may stop one (its standby takes over).
                expendable = name.startswith('pod-') or (
                    args.autoscalers > 1 and name.startswith('knative-autoscaler') and not name.endswith('sandbox'))
                if not expendable and p.poll() is not None:
                    raise RuntimeError(f'{name} exited {p.returncode}: see {d}/logs/{name}.log')
            stop.wait(0.5)
        return 0
    except Exception as e:
        log('failed:', e)
        with open(d + '/failed', 'w') as f:
            f.write(str(e) + '\n')
        return 1
    finally:
        if kubelet:
            kubelet.stop()
        procs.stop_all()
        # Leave the namespace as fresh as it was: the next cluster in it may start.
        for line in sh('ip -o link show', check=False).splitlines():
            name = line.split(':')[1].strip().split('@')[0]
            if name != 'lo':
                sh(f'ip link del {name}', check=False)
        log('stopped')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('up')
    u.add_argument('--dir', required=True)
    u.add_argument('--bin', required=True, help='the directory scripts/cluster-build.sh printed')
    u.add_argument('--activator', choices=['sluice', 'knative'], default='sluice',
                   help='whose image the activator Deployment runs')
    u.add_argument('--queue-proxy', choices=['sluice', 'knative'], default='sluice',
                   help='whose image config-deployment names as queue-sidecar-image')
    u.add_argument('--autoscaler', choices=['sluice', 'knative'], default='knative',
                   help="whose autoscaler runs in the autoscaler's namespace (10.244.0.2)")
    u.add_argument('--autoscalers', type=int, default=1, help="replicas of Sluice's autoscaler")
    u.add_argument('--activators', type=int, default=1)
    u.add_argument('--sluice', required=True)
    u.add_argument('--testapp', required=True)
    u.add_argument('--config', default='{}', help='JSON: ConfigMap name -> data, replacing Knative\'s defaults')
    args = ap.parse_args()
    args.config = json.loads(args.config)
    args.sluice, args.testapp, args.bin = map(os.path.abspath, (args.sluice, args.testapp, args.bin))
    sys.exit(up(args))


if __name__ == '__main__':
    main()
