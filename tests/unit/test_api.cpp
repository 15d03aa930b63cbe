// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink API over the engine and a simulated kernel (sim_kernel.hpp), served by the real
// server on a Unix socket in a temporary directory, without root: the method table, its errors
// and limits, and the invariant that a client that read List at seq S and then Watch(since=S)
// holds what List shows now, through overruns and restarts.
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "daemon/server.hpp"
#include "daemon/varlink_api.hpp"
#include "daemon/wire.hpp"
#include "sim_kernel.hpp"

namespace nsidd::daemon {
namespace {

using mirror::sim::Sim;
using varlink::Json;
using Rows = std::map<std::pair<std::string, std::int64_t>, Json>; // (observer, nsid) -> entry

// A client that never blocks: the test runs the server's loop while it waits.
class TestClient {
public:
    explicit TestClient(const std::string& path) {
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path.copy(addr.sun_path, sizeof addr.sun_path - 1);
        connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    bool connected() const { return connected_; }
    void send_raw(const std::string& bytes) {
        ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(bytes.size()));
    }
    void send(std::string_view method, const Json& parameters = Json::object(), bool more = false,
              bool oneway = false) {
        send_raw(varlink::encode_call(method, parameters, more, oneway));
    }
    // The next reply if one has come; closed() tells a hang-up.
    std::optional<varlink::Reply> poll() {
        for (;;) {
            auto m = framer_.next();
            if (m && *m) {
                auto r = varlink::parse_reply(**m);
                EXPECT_TRUE(r) << **m;
                return r ? std::optional(*r) : std::nullopt;
            }
            char buf[65536];
            const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0)
                closed_ = true;
            if (n <= 0)
                return std::nullopt;
            framer_.append(std::span<const char>(buf, static_cast<std::size_t>(n)));
        }
    }
    bool closed() const { return closed_; }

private:
    UniqueFd fd_;
    varlink::Framer framer_{64u << 20};
    bool connected_ = false;
    bool closed_ = false;
};

// The engine, the API and the server as the daemon wires them (daemon/serve.cpp), on a loop the
// test runs.
class Harness {
public:
    explicit Harness(Sim& sim, bool host, std::uint64_t first_seq = 1000,
                     Server::Limits limits = default_limits())
        : sim_(sim) {
        char tmpl[] = "/tmp/nsidd-test-api-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        path_ = dir_ + "/io.nsidd";
        auto config = mirror::sim::config(sim, host);
        config.first_seq = first_seq;
        engine_ = std::make_unique<mirror::Engine>(sim, config, clock_.clock());
        EXPECT_TRUE(engine_->resync(mirror::ResyncReason::Startup));
        engine_->settle();
        sd_event* e = nullptr;
        EXPECT_GE(sd_event_new(&e), 0);
        event_.reset(e);
        api_ = std::make_unique<VarlinkApi>(*engine_, hooks());
        auto fd = listen_unix(path_);
        EXPECT_TRUE(fd);
        server_ = std::make_unique<Server>(
            e, std::move(*fd), limits,
            [this](Server::Client& p, const varlink::Call& c) { api_->call(p, c); });
        EXPECT_TRUE(server_->start());
        send_changes(engine_->feed(), server_.get());
    }
    ~Harness() {
        server_.reset();
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    static Server::Limits default_limits() {
        return {64, 64, varlink::ConnectionLimits{1 << 20, 16 << 20}, 45'000'000, 64 << 20};
    }

    const std::string& path() const { return path_; }
    mirror::Engine& engine() { return *engine_; }
    std::size_t resyncs_asked = 0;

    // One turn of the daemon's loop after the simulated kernel moved: events, a resync after a
    // loss, discovery now and then, settled and sent.
    void step(bool discover) {
        if (engine_->apply_events().lost) {
            EXPECT_TRUE(engine_->resync(mirror::ResyncReason::Overrun));
        }
        if (discover)
            mirror::sim::discover(*engine_);
        settle();
    }
    void settle() {
        engine_->settle();
        send_changes(engine_->feed(), server_.get());
    }
    // Runs the loop until `client` has a reply (at most 10 s).
    varlink::Reply await(TestClient& client) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < until) {
            if (auto r = client.poll())
                return *r;
            if (client.closed())
                return {Json::object(), "closed", false};
            sd_event_run(event_.get(), 1000);
        }
        ADD_FAILURE() << "no reply within 10 s";
        return {Json::object(), "timeout", false};
    }
    // Runs what the loop has ready, `times` times.
    void run(int times) {
        for (int i = 0; i < times; ++i)
            sd_event_run(event_.get(), 0);
    }
    varlink::Reply call(std::string_view method, const Json& parameters = Json::object()) {
        TestClient c(path_);
        EXPECT_TRUE(c.connected());
        c.send(method, parameters);
        return await(c);
    }

private:
    VarlinkApi::Hooks hooks() {
        return {.status =
                    [this] {
                        return Json{{"entries", engine_->registry().entry_count()}};
                    },
                .resync = [this] { ++resyncs_asked; },
                .reload = [] { return std::optional<std::string>("no configuration here"); },
                .restart_needed = [] { return std::vector<std::string>{}; },
                .metrics_text = [] { return std::string("# none\n"); },
                .nsid_of_name = [](const std::string&) { return std::optional<registry::Nsid>(); },
                .counted = {},
                .settle =
                    [this] {
                        settle();
                    }};
    }

    Sim& sim_;
    mirror::sim::FakeClock clock_;
    std::string dir_, path_;
    std::unique_ptr<mirror::Engine> engine_;
    std::unique_ptr<sd_event, FnDeleter<sd_event_unref>> event_;
    std::unique_ptr<VarlinkApi> api_;
    std::unique_ptr<Server> server_;
};

// The feed alone: numbering, the kept window, and what a resumed watcher is given.
TEST(Feed, KeepsTheLastDrainedAndResumesOnlyWithin) {
    mirror::Feed feed(100, 4);
    const auto push = [&](registry::Nsid nsid) {
        mirror::View e;
        e.nsid = nsid;
        feed.push(mirror::Feed::Kind::New, registry::kSelf, std::move(e), false,
                  registry::PeerState::Active);
    };
    EXPECT_TRUE(feed.resumable(100)); // nothing yet: nothing to miss
    EXPECT_FALSE(feed.resumable(99)); // a seq of an earlier run
    for (registry::Nsid k = 0; k < 10; ++k)
        push(k);
    EXPECT_EQ(feed.seq(), 110u);
    EXPECT_FALSE(feed.resumable(105)); // pending is not replayed: the drain sends it
    std::vector<std::uint64_t> sent;
    feed.drain([&](const auto& item) { sent.push_back(item.seq); });
    EXPECT_EQ(sent.size(), 10u); // pending outlives the window until drained
    EXPECT_EQ(sent.front(), 101u);
    EXPECT_EQ(sent.back(), 110u);
    EXPECT_FALSE(feed.resumable(105)); // 106 is gone: only 107..110 are kept
    EXPECT_TRUE(feed.resumable(106));
    EXPECT_FALSE(feed.resumable(111)); // not numbered yet
    push(10);
    EXPECT_EQ(feed.drained_seq(), 110u);
    std::vector<std::uint64_t> replayed;
    feed.for_each_after(107, [&](const auto& item) { replayed.push_back(item.seq); });
    EXPECT_EQ(replayed, (std::vector<std::uint64_t>{108, 109, 110}));
    // At start-up, what no client can have seen is not kept; what is pending still is.
    feed.forget_drained();
    EXPECT_TRUE(feed.resumable(110));
    EXPECT_FALSE(feed.resumable(109));
    sent.clear();
    feed.drain([&](const auto& item) { sent.push_back(item.seq); });
    EXPECT_EQ(sent, std::vector<std::uint64_t>{111});
}

TEST(Api, MethodTableAndErrors) {
    Sim sim;
    for (int i = 0; i < 5; ++i)
        sim.assign_self(sim.named("n" + std::to_string(i)));
    Harness h(sim, false);
    auto r = h.call("org.varlink.service.GetInfo");
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.parameters["interfaces"],
              Json::array({"org.varlink.service", "io.nsidd.Registry"}));
    r = h.call("org.varlink.service.GetInterfaceDescription", {{"interface", "io.nsidd.Registry"}});
    EXPECT_NE(r.parameters["description"].get<std::string>().find("interface io.nsidd.Registry"),
              std::string::npos);
    EXPECT_EQ(h.call("io.nsidd.Registry.Nothing").error, varlink::kMethodNotFound);
    EXPECT_EQ(h.call("org.example.Nothing").error, varlink::kInterfaceNotFound);
    r = h.call("io.nsidd.Registry.List", {{"verbose", true}});
    EXPECT_EQ(r.error, varlink::kInvalidParameter);
    EXPECT_EQ(r.parameters["parameter"], "verbose");
    EXPECT_EQ(h.call("io.nsidd.Registry.List", {{"observer", 3}}).error,
              varlink::kInvalidParameter);
    EXPECT_EQ(h.call("io.nsidd.Registry.List", {{"observer", "4242"}}).error, kNoSuchObserver);
    EXPECT_EQ(h.call("io.nsidd.Registry.History", {{"limit", -1}}).error,
              varlink::kInvalidParameter);
    EXPECT_EQ(h.call("io.nsidd.Registry.Watch").error, varlink::kExpectedMore);
    EXPECT_EQ(h.call("io.nsidd.Registry.GetStatus").parameters["entries"], 5);
    r = h.call("io.nsidd.Registry.List");
    EXPECT_EQ(r.parameters["entries"].size(), 5u);
    EXPECT_EQ(r.parameters["seq"], h.engine().feed().seq());
    // Privileged methods: uid 0 only (a test not run as root is denied; as root, allowed).
    r = h.call("io.nsidd.Registry.Resync");
    if (::geteuid() == 0) {
        EXPECT_EQ(r.error, "");
        EXPECT_EQ(h.resyncs_asked, 1u);
        EXPECT_EQ(h.call("io.nsidd.Registry.Reload").parameters["message"],
                  "no configuration here");
    } else {
        EXPECT_EQ(r.error, kPermissionDenied);
        EXPECT_EQ(h.resyncs_asked, 0u);
    }
    // more and oneway together: nothing done and (oneway) nothing sent; the next call is
    // answered as if it were the first.
    TestClient c(h.path());
    c.send("io.nsidd.Registry.Watch", Json::object(), true, true);
    c.send("org.varlink.service.GetInfo");
    r = h.await(c);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.parameters["vendor"], "nsidd");
}

TEST(Api, Limits) {
    Sim sim;
    auto limits = Harness::default_limits();
    limits.max_connections = 3;
    limits.connection.max_message = 4096;
    Harness h(sim, false, 1000, limits);
    // A request past the bound: an error, and the connection is closed.
    TestClient big(h.path());
    big.send_raw(
        varlink::encode_call("io.nsidd.Registry.List", {{"observer", std::string(8192, 'x')}}));
    EXPECT_EQ(h.await(big).error, varlink::kInvalidParameter);
    EXPECT_EQ(h.await(big).error, "closed");
    // A connection past the limit is closed at once; the others are still served.
    std::vector<std::unique_ptr<TestClient>> held;
    for (int i = 0; i < 3; ++i) {
        held.push_back(std::make_unique<TestClient>(h.path()));
        held.back()->send("io.nsidd.Registry.GetStatus");
        EXPECT_EQ(h.await(*held.back()).error, "");
    }
    TestClient extra(h.path());
    extra.send("io.nsidd.Registry.GetStatus");
    EXPECT_EQ(h.await(extra).error, "closed");
    held[0]->send("io.nsidd.Registry.GetStatus");
    EXPECT_EQ(h.await(*held[0]).error, "");
}

// What a client holds: List's rows, then each Watch reply applied.
void apply_change(Rows& rows, const Json& change) {
    const std::pair key{change["observer"].get<std::string>(),
                        change["entry"]["nsid"].get<std::int64_t>()};
    if (change["removed"].get<bool>())
        rows.erase(key);
    else
        rows[key] = change["entry"];
}

Rows graph_rows(const Json& graph) {
    Rows rows;
    for (const auto& t : graph["tables"])
        for (const auto& e : t["entries"])
            rows[{t["observer"].get<std::string>(), e["nsid"].get<std::int64_t>()}] = e;
    return rows;
}

// The first difference between what a client rebuilt and what Graph shows.
std::string differ(const Rows& got, const Rows& want) {
    for (const auto& [k, e] : want) {
        const auto it = got.find(k);
        if (it == got.end())
            return k.first + "/" + std::to_string(k.second) + " never sent";
        if (it->second != e)
            return k.first + "/" + std::to_string(k.second) + " sent " + it->second.dump() +
                   ", shown " + e.dump();
    }
    for (const auto& [k, e] : got)
        if (!want.count(k))
            return k.first + "/" + std::to_string(k.second) + " sent, never removed";
    return "";
}

// A client that read Graph at some seq and then watches from it.
struct Resumer {
    Rows rows;
    std::unique_ptr<TestClient> client;
    std::uint64_t since = 0;
};

void churn_step(mirror::sim::Churn& churn, int step) {
    const int action = churn.roll(100);
    if (action < 40)
        churn.create(step, false);
    else if (action < 55 && churn.alive.size() >= 2)
        churn.link();
    else if (action < 80 && !churn.alive.empty())
        churn.kill_some();
    else if (action < 88)
        churn.sim.overrun();
}

// Reads a client's replies until it has every change up to `upto`, applying each.
void take(Harness& h, Resumer& r, std::uint64_t upto) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (r.since < upto) {
        auto reply = r.client->poll();
        if (!reply) {
            ASSERT_FALSE(r.client->closed()) << "the server hung up";
            ASSERT_LT(std::chrono::steady_clock::now(), until)
                << "changes up to " << upto << " not sent within 10 s (got to " << r.since << ")";
            h.run(1);
            continue;
        }
        ASSERT_EQ(reply->error, "");
        ASSERT_EQ(reply->parameters["seq"].get<std::uint64_t>(), r.since + 1);
        r.since = reply->parameters["seq"].get<std::uint64_t>();
        apply_change(r.rows, reply->parameters);
    }
}

void watch_replays_list(std::uint32_t seed, bool host) {
    SCOPED_TRACE("seed " + std::to_string(seed) + (host ? " host" : " self"));
    Sim sim;
    std::mt19937 rng(seed);
    sim.cut = 16;
    sim.target_cut = 16;
    mirror::sim::Churn churn{sim, rng, {}};
    std::uint64_t first_seq = 1'000'000;
    for (int run = 0; run < 2; ++run) {
        // A restart: a new engine, its seqs after the last run's.
        Harness h(sim, host, first_seq);
        std::vector<Resumer> clients;
        for (int step = 0; step < 150; ++step) {
            churn_step(churn, run * 1000 + step);
            h.step(step % 7 == 0);
            if (step % 10 == 0) {
                // A client reads the whole mirror (and is then away for a few steps).
                Resumer r;
                auto graph = h.call("io.nsidd.Registry.Graph");
                r.rows = graph_rows(graph.parameters);
                r.since = graph.parameters["seq"].get<std::uint64_t>();
                clients.push_back(std::move(r));
            } else if (step % 10 == 5) {
                // It watches from the seq it read: the changes since are replayed. The first
                // of a restarted run asks with a seq of the last run, and is told so.
                auto& r = clients.back();
                const auto asked = clients.size() == 1 && run > 0 ? first_seq - 1 : r.since;
                r.client = std::make_unique<TestClient>(h.path());
                r.client->send("io.nsidd.Registry.Watch", {{"since", asked}}, true);
                auto marker = h.await(*r.client);
                ASSERT_EQ(marker.parameters["kind"], "resync");
                ASSERT_EQ(marker.parameters["resumed"].get<bool>(), asked == r.since);
                if (asked != r.since) {
                    // Not resumed: it reads the mirror again, at the seq it was told.
                    r.rows = graph_rows(h.call("io.nsidd.Registry.Graph").parameters);
                    r.since = marker.parameters["seq"].get<std::uint64_t>();
                }
            }
            const auto graph = h.call("io.nsidd.Registry.Graph").parameters;
            const auto want = graph_rows(graph);
            for (auto& c : clients) {
                if (!c.client)
                    continue;
                take(h, c, graph["seq"].get<std::uint64_t>());
                ASSERT_EQ(differ(c.rows, want), "") << "run " << run << " step " << step;
            }
        }
        first_seq = h.engine().feed().seq() + 1;
    }
}

// Under the sanitizers (ten times slower) fewer seeds: the build without them runs them all.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint32_t kSeeds = 2;
#else
constexpr std::uint32_t kSeeds = 6;
#endif

TEST(Api, WatchFromAnySeqGivesListSelf) {
    for (std::uint32_t seed = 1; seed <= kSeeds; ++seed)
        watch_replays_list(seed, false);
}

TEST(Api, WatchFromAnySeqGivesListHost) {
    for (std::uint32_t seed = 1; seed <= kSeeds; ++seed)
        watch_replays_list(seed, true);
}

} // namespace
} // namespace nsidd::daemon
