// SPDX-License-Identifier: LGPL-2.1-or-later
// Which reloaded settings apply only after a restart: every one but log-level and
// resync-interval, found from the parser's own list of options (none named by hand).
#include "daemon/options.hpp"

#include <gtest/gtest.h>

namespace nsidd::daemon {
namespace {

using Keys = std::vector<std::string>;

TEST(Options, LiveSettingsNeedNoRestart) {
    const Options running;
    Options fresh = running;
    EXPECT_EQ(restart_only_changes(running, fresh), Keys{});
    fresh.log_level = "debug";
    fresh.resync_interval = 7;
    EXPECT_EQ(restart_only_changes(running, fresh), Keys{});
}

TEST(Options, EverySettingElseNeedsARestart) {
    const Options running;
    Options fresh = running;
    fresh.socket = "/run/other.sock";
    fresh.scope = Scope::Host;
    fresh.rcvbuf = 4096;
    fresh.metrics_listen = "none";
    fresh.history = 1;
    fresh.max_connections = 2;
    fresh.max_connections_per_uid = 3;
    fresh.max_request = 4096;
    fresh.max_output = 8192;
    fresh.max_total_output = 1 << 21;
    fresh.idle_timeout = 9;
    fresh.discovery_interval = 2.5;
    fresh.orphan_grace = 1.5;
    fresh.stale_mount_paths = {"/run/x/*"};
    fresh.assign_ids = true;
    fresh.id_cache = "none";
    EXPECT_EQ(restart_only_changes(running, fresh),
              (Keys{"assign-ids", "discovery-interval", "history", "id-cache", "idle-timeout",
                    "max-connections", "max-connections-per-uid", "max-output", "max-request",
                    "max-total-output", "metrics-listen", "orphan-grace", "rcvbuf", "scope",
                    "socket", "stale-mount-paths"}));
}

} // namespace
} // namespace nsidd::daemon
