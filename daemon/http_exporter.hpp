// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "daemon/options.hpp"
#include "util/result.hpp"

struct MHD_Daemon;

namespace nsidd::daemon {

/// The Prometheus endpoint: GET /metrics (and /) over HTTP/1.1, served by libmicrohttpd on a
/// thread of its own, IPv4 and IPv6. Bounded against slow and hostile scrapers: a few
/// connections at once, each with a timeout. Stopping it takes milliseconds.
class HttpExporter {
public:
    /// Binds `where` and serves what `text()` returns (called on the exporter's thread: it must
    /// be thread-safe). Fails with the bind's errno (EADDRINUSE: the port is taken).
    static Result<std::unique_ptr<HttpExporter>> start(const ListenAddress& where,
                                                       std::function<std::string()> text);
    ~HttpExporter();
    HttpExporter(const HttpExporter&) = delete;
    HttpExporter& operator=(const HttpExporter&) = delete;

private:
    explicit HttpExporter(std::function<std::string()> text) : text_(std::move(text)) {}
    std::function<std::string()> text_;
    MHD_Daemon* daemon_ = nullptr;
    friend struct HttpExporterAccess;
};

} // namespace nsidd::daemon
