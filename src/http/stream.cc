#include "http/stream.h"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <cerrno>

namespace sluice::http {

namespace {

class TcpStream final : public Stream::Impl {
 public:
  explicit TcpStream(tcp::socket socket) : socket_(std::move(socket)) {}

  Stream::executor_type executor() override { return socket_.get_executor(); }
  void read_some(asio::mutable_buffer buffer, Stream::IoHandler handler) override {
    socket_.async_read_some_draining(buffer, std::move(handler));
  }
  void write_some(const Stream::ConstBuffers& buffers, Stream::IoHandler handler) override {
    socket_.async_write_some(buffers, std::move(handler));
  }
  void wait_readable(Stream::WaitHandler handler) override {
    socket_.async_wait(tcp::socket::wait_read, std::move(handler));
  }
  void connect(const tcp::endpoint& to, Stream::WaitHandler handler) override {
    socket_.async_connect(to, [this, h = std::move(handler)](error_code ec) mutable {
      if (!ec) {
        error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);
      }
      std::move(h)(ec);
    });
  }
  Stream::Peek peek() override {
    if (!socket_.is_open())
      return Stream::Peek::Closed;
    char probe;
    const ssize_t n = ::recv(socket_.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
      return Stream::Peek::Data;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return Stream::Peek::Nothing;
    return Stream::Peek::Closed;  // 0 is the peer's FIN
  }
  std::optional<tcp::endpoint> remote_endpoint() override {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (ec)
      return std::nullopt;
    return ep;
  }
  void shutdown_send() override {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }
  void cancel() override {
    error_code ignored;
    socket_.cancel(ignored);
  }
  void close() override {
    error_code ignored;
    socket_.close(ignored);
  }
  DrainingSocket* direct_socket() override { return &socket_; }

 private:
  DrainingSocket socket_;
};

}  // namespace

size_t Stream::try_write(asio::const_buffer buffer, error_code& ec) {
  ec.clear();
  if (socket_ == nullptr || !socket_->is_open() || buffer.size() == 0)
    return 0;
  for (;;) {
    const ssize_t n =
        ::send(socket_->native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
      return static_cast<size_t>(n);
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      ec = error_code(errno, asio::error::get_system_category());
    return 0;
  }
}

Stream Stream::tcp(tcp::socket socket) {
  return Stream(std::make_unique<TcpStream>(std::move(socket)));
}

}  // namespace sluice::http
