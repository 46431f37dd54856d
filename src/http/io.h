// http/io.h — short names for the Asio pieces every I/O file uses.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
template <typename T = void>
using Task = asio::awaitable<T>;

// Completion token that turns errors into values: `auto [ec, n] = co_await op(..., kUseTuple)`.
inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

}  // namespace sluice::http
