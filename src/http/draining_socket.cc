// http/draining_socket.cc: the Asio 1.81 epoll reactor internals draining reads need.
//
// Asio keeps a descriptor's registered events, its epoll descriptor and the mask of a
// descriptor's latest wakeup private. C++ waives access checking in the template
// arguments of an explicit instantiation, so member pointers taken there reach them
// without copying Asio's layout; the header pins the exact Boost version.
#include "http/draining_socket.h"

#ifdef SLUICE_DRAINING_READS
#include <sys/epoll.h>

namespace sluice::http::draining {
namespace {

// Reach<Tag, member>: defines get(Tag) returning the member pointer.
template <typename Tag, typename Tag::type Member>
struct Reach {
  friend typename Tag::type get(Tag) { return Member; }
};

struct RegisteredEvents {
  using type = uint32_t ad::epoll_reactor::descriptor_state::*;
  friend type get(RegisteredEvents);
};
template struct Reach<RegisteredEvents, &ad::epoll_reactor::descriptor_state::registered_events_>;

struct EpollFd {
  using type = int ad::epoll_reactor::*;
  friend type get(EpollFd);
};
template struct Reach<EpollFd, &ad::epoll_reactor::epoll_fd_>;

struct Mutex {
  using type = ad::conditionally_enabled_mutex ad::epoll_reactor::descriptor_state::*;
  friend type get(Mutex);
};
template struct Reach<Mutex, &ad::epoll_reactor::descriptor_state::mutex_>;

struct TaskResult {
  using type = unsigned int ad::scheduler_operation::*;
  friend type get(TaskResult);
};
template struct Reach<TaskResult, &ad::scheduler_operation::task_result_>;

// descriptor_state derives privately from scheduler_operation; a C-style cast is the one
// conversion to a private base the language allows.
ad::scheduler_operation* as_operation(ad::epoll_reactor::descriptor_state* state) {
  return (ad::scheduler_operation*)state;  // NOLINT(google-readability-casting)
}

}  // namespace

bool watch_peer_close(ad::reactor& reactor, ad::reactor::per_descriptor_data state, int fd) {
  if (state == nullptr)
    return false;
  uint32_t& registered = state->*get(RegisteredEvents{});
  if ((registered & EPOLLRDHUP) != 0)
    return true;
  ad::conditionally_enabled_mutex::scoped_lock lock(state->*get(Mutex{}));
  if (registered == 0)  // not registered (yet, or any more): nothing to widen
    return false;
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = state;
  if (::epoll_ctl(reactor.*get(EpollFd{}), EPOLL_CTL_MOD, fd, &ev) != 0)
    return false;
  registered = ev.events;
  return true;
}

uint32_t last_events(ad::reactor::per_descriptor_data state) {
  return as_operation(state)->*get(TaskResult{});
}

}  // namespace sluice::http::draining
#endif
