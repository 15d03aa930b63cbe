// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>

#include <systemd/sd-event.h>

#include "daemon/metrics.hpp"
#include "daemon/netlink_kernel.hpp"
#include "daemon/server.hpp"
#include "mirror/engine.hpp"
#include "util/result.hpp"
#include "util/storm_gate.hpp"

namespace nsidd::daemon {

/// The nsid event path on the loop: the event socket read in batches (paused in storms,
/// docs/design.md, "Storms"), resyncs after an overrun (at once, or backed off while overruns
/// go on), periodic ones and those asked for. What it reads goes to the engine; the rest of the
/// daemon hears of it through Host.
class EventPath {
public:
    /// What the event path tells the rest of the daemon.
    class Host {
    public:
        /// The engine changed `work` entries: its feed has changes to send.
        virtual void changed(std::size_t work) = 0;
        /// Ids arrived that no known namespace explains (Engine::refresh_due()).
        virtual void ids_unexplained() = 0;
        /// A step ended that may change the service's status line.
        virtual void stepped() = 0;

    protected:
        ~Host() = default;
    };

    /// All must outlive the event path. Nothing is watched until start().
    EventPath(sd_event* event, NetlinkKernel& kernel, mirror::Engine& engine, Metrics& metrics,
              Host& host)
        : event_(event), kernel_(kernel), engine_(engine), metrics_(metrics), host_(host) {}

    /// Watches the event socket and resyncs every `resync_interval` seconds (0: never).
    Result<void> start(unsigned resync_interval);
    /// Reads the tables now (a failure is logged, and retried unless at start-up).
    Result<void> resync(mirror::ResyncReason reason);
    /// Resyncs every `seconds` from now on (0: never).
    void set_resync_interval(unsigned seconds);
    /// Pauses of the event socket so far (probes included).
    std::uint64_t pauses() const noexcept { return storm_gate_.pauses(); }

private:
    // Reads and applies what the event socket holds; returns the events read.
    std::size_t read();
    // After an overrun: resync now, or later if the last one was recent.
    void overrun_resync();
    // Runs an overrun resync after `delay_usec`, dropping the events read until then.
    void defer_resync(std::uint64_t delay_usec);
    void arm_resync_timer();

    static int on_io(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    static int on_resume(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_overrun_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_resync_timer(sd_event_source*, uint64_t, void* userdata) noexcept;

    static constexpr std::uint64_t kMaxResyncBackoffUsec = 2'000'000;
    static constexpr std::uint64_t kRetryResyncUsec = 200'000;

    sd_event* event_;
    NetlinkKernel& kernel_;
    mirror::Engine& engine_;
    Metrics& metrics_;
    Host& host_;
    EventSource io_;     // the event socket: off while a storm's events queue up
    EventSource resume_; // ends a pause: reads, then pauses again or turns the socket back on
    StormGate storm_gate_;
    EventSource overrun_timer_;
    EventSource resync_timer_;
    unsigned resync_interval_ = 0;
    bool overrun_resync_pending_ = false;
    std::uint64_t last_resync_end_usec_ = 0; // CLOCK_MONOTONIC
};

} // namespace nsidd::daemon
