// SPDX-License-Identifier: LGPL-2.1-or-later
#include "util/time.hpp"

#include <cstdio>
#include <ctime>

namespace nsidd {
namespace {

std::uint64_t clock_usec(clockid_t clock) noexcept {
    timespec ts{};
    ::clock_gettime(clock, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

} // namespace

std::uint64_t realtime_usec() noexcept {
    return clock_usec(CLOCK_REALTIME);
}
std::uint64_t monotonic_usec() noexcept {
    return clock_usec(CLOCK_MONOTONIC);
}

std::string format_iso8601(std::uint64_t usec) {
    const std::time_t secs = static_cast<std::time_t>(usec / 1000000u);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<unsigned>(usec % 1000000u));
    return buf;
}

std::string format_duration(std::uint64_t usec) {
    const unsigned long long s = usec / 1000000u;
    char buf[48];
    if (s < 60)
        std::snprintf(buf, sizeof buf, "%llus", s);
    else if (s < 3600)
        std::snprintf(buf, sizeof buf, "%llumin", s / 60);
    else if (s < 86400)
        std::snprintf(buf, sizeof buf, "%lluh %llumin", s / 3600, s % 3600 / 60);
    else
        std::snprintf(buf, sizeof buf, "%llud %lluh", s / 86400, s % 86400 / 3600);
    return buf;
}

std::string format_age(std::uint64_t then_usec, std::uint64_t now_usec) {
    return format_duration(now_usec > then_usec ? now_usec - then_usec : 0) + " ago";
}

} // namespace nsidd
