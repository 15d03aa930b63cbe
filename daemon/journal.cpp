// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/journal.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <sys/uio.h>

#include <sys/stat.h>
#include <syslog.h>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
// Our own CODE_FILE/CODE_LINE/CODE_FUNC go with each entry: not sd-journal's as well.
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

namespace nsidd::daemon {
namespace {

// The notable event being logged right now (the daemon is single-threaded).
struct Tag {
    const char* id = nullptr;
    std::source_location where;
    std::span<const std::string> fields;
};
thread_local Tag current_tag;

int priority(spdlog::level::level_enum level) {
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
        return LOG_DEBUG;
    case spdlog::level::info:
        return LOG_INFO;
    case spdlog::level::warn:
        return LOG_WARNING;
    case spdlog::level::err:
        return LOG_ERR;
    default:
        return LOG_CRIT;
    }
}

class JournalSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        const int len = static_cast<int>(msg.payload.size());
        const char* text = msg.payload.data();
        const int prio = priority(msg.level);
        if (current_tag.id != nullptr) {
            const auto& w = current_tag.where;
            std::vector<std::string> lines{"MESSAGE=" +
                                               std::string(text, static_cast<std::size_t>(len)),
                                           "PRIORITY=" + std::to_string(prio),
                                           "SYSLOG_IDENTIFIER=nsidd",
                                           std::string("MESSAGE_ID=") + current_tag.id,
                                           std::string("CODE_FILE=") + w.file_name(),
                                           "CODE_LINE=" + std::to_string(w.line()),
                                           std::string("CODE_FUNC=") + w.function_name()};
            lines.insert(lines.end(), current_tag.fields.begin(), current_tag.fields.end());
            std::vector<iovec> iov;
            for (auto& l : lines)
                iov.push_back({l.data(), l.size()});
            sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
        } else {
            sd_journal_send("MESSAGE=%.*s", len, text, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=nsidd", nullptr);
        }
    }
    void flush_() override {}
};

} // namespace

std::string_view message_id(Notable event) noexcept {
    switch (event) {
    case Notable::Started:
        return "9ed77da3a9d849f8aa9bbc9daf4aa134";
    case Notable::Overrun:
        return "cae5f7961cb8462c8eab72c2b5c8d914";
    case Notable::Resync:
        return "9e01ea31c4bd49cb968903fc81df2a6a";
    case Notable::DeathBurst:
        return "c7f6f255177a45178938aee8730bf970";
    case Notable::PermissionDenied:
        return "3d5ebd27cb7645ecb46343c490e787f5";
    case Notable::StaleMount:
        return "301668d4865e4439ae34817ef75ea28a";
    case Notable::FdHeld:
        return "2db409e88f6740ea9d3f87c85d8e8c91";
    case Notable::Pinned:
        return "48b2db7a98b346769083a5284f0d5ba8";
    case Notable::Stopped:
        return "5fae1031d37948bd81ecc6df6a8c4193";
    }
    return "";
}

void log_notable(Notable event, spdlog::level::level_enum level, std::string_view text,
                 std::span<const std::string> fields, std::source_location where) {
    current_tag = Tag{message_id(event).data(), where, fields};
    spdlog::log(level, "{}", text);
    current_tag = Tag{};
}

bool stderr_is_journal() {
    const char* e = std::getenv("JOURNAL_STREAM");
    if (e == nullptr)
        return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st {};
    if (::fstat(2, &st) < 0)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

std::shared_ptr<spdlog::sinks::sink> make_journal_sink() {
    return std::make_shared<JournalSink>();
}

void set_log_level(const std::string& name) {
    spdlog::set_level(spdlog::level::from_str(name == "warning" ? "warn" : name));
}

} // namespace nsidd::daemon
