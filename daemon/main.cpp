// SPDX-License-Identifier: LGPL-2.1-or-later
// nsidd: keeps a live, exact mirror of the kernel's nsid tables and serves it over Varlink.
#include <cstdio>
#include <exception>
#include <new>

#include <malloc.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"
#include "daemon/journal.hpp"
#include "daemon/options.hpp"

int main(int argc, char** argv) {
    using namespace nsidd::daemon;
    // Blocks of 128 KiB and more (an answer to List or Graph, the tables' arrays) are mapped
    // on their own and returned whole when freed. Left to glibc, the threshold rises to the
    // largest block freed so far, after which a multi-megabyte answer is carved from the heap
    // and stays in the RSS once sent (bench/README.md, "Memory").
    ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    try {
        auto parsed = parse_options(argc, argv);
        if (auto* code = std::get_if<int>(&parsed))
            return *code;
        auto& options = std::get<Options>(parsed);
        std::shared_ptr<spdlog::logger> logger;
        if (stderr_is_journal()) {
            logger = std::make_shared<spdlog::logger>("nsidd", make_journal_sink());
        } else {
            logger = spdlog::stderr_logger_st("nsidd");
            logger->set_pattern("%l: %v");
        }
        spdlog::set_default_logger(logger);
        set_log_level(options.log_level);
        Daemon daemon(std::move(options), argc, argv);
        return daemon.run();
    } catch (const std::bad_alloc&) {
        std::fputs("nsidd: out of memory\n", stderr);
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nsidd: %s\n", e.what());
        return 1;
    }
}
