// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/http_exporter.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util/unique_fd.hpp"

namespace nsidd::daemon {
namespace {

// A scraper gets this many connections at once and this long per connection.
constexpr unsigned kMaxConnections = 8;
constexpr unsigned kTimeoutSeconds = 10;
constexpr const char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

} // namespace

struct HttpExporterAccess {
    static MHD_Result answer(void* cls, MHD_Connection* connection, const char* url,
                             const char* method, const char*, const char*, size_t*,
                             void**) noexcept {
        auto* self = static_cast<HttpExporter*>(cls);
        const bool get = std::strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                         std::strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        const bool path = std::strcmp(url, "/metrics") == 0 || std::strcmp(url, "/") == 0;
        std::string body;
        unsigned status = MHD_HTTP_OK;
        if (!get) {
            status = MHD_HTTP_METHOD_NOT_ALLOWED;
            body = "GET /metrics\n";
        } else if (!path) {
            status = MHD_HTTP_NOT_FOUND;
            body = "GET /metrics\n";
        } else {
            try {
                body = self->text_();
            } catch (...) {
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
                body.clear();
            }
        }
        MHD_Response* response =
            MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
        if (response == nullptr)
            return MHD_NO;
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, kContentType);
        const MHD_Result r = MHD_queue_response(connection, status, response);
        MHD_destroy_response(response);
        return r;
    }
};

Result<std::unique_ptr<HttpExporter>> HttpExporter::start(const ListenAddress& where,
                                                          std::function<std::string()> text) {
    // Our own listening socket: a bind error is reported as it is (EADDRINUSE, EACCES).
    UniqueFd fd(::socket(where.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return fail_errno();
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (where.addr.ss_family == AF_INET6)
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&where.addr), where.len) < 0 ||
        ::listen(fd.get(), 16) < 0)
        return fail_errno();
    std::unique_ptr<HttpExporter> self(new HttpExporter(std::move(text)));
    self->daemon_ = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, nullptr, nullptr,
        &HttpExporterAccess::answer, self.get(), MHD_OPTION_LISTEN_SOCKET, fd.get(),
        MHD_OPTION_CONNECTION_LIMIT, kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT,
        kTimeoutSeconds, MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxConnections, MHD_OPTION_END);
    if (self->daemon_ == nullptr)
        return fail_errno(errno != 0 ? errno : EIO);
    fd.release(); // MHD owns it now and closes it at stop
    return self;
}

HttpExporter::~HttpExporter() {
    if (daemon_ != nullptr)
        MHD_stop_daemon(daemon_);
}

} // namespace nsidd::daemon
