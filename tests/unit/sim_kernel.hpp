// SPDX-License-Identifier: LGPL-2.1-or-later
// A simulated kernel for the unit tests of the engine and the API: dumps cut like Linux >= 6.10
// cuts them, ids reused at once, overruns that swallow DEL and NEW alike, dying namespaces whose
// own tables vanish, and a directory tree standing in for /proc and the nsfs mounts. Each live
// namespace discovery can reach is a regular file there; the simulated kernel knows it by its
// inode. Also: the engine's steps as the daemon runs them, and a Watch client's replay.
#pragma once

#include <algorithm>
#include <cerrno>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "mirror/engine.hpp"
#include "model_ids.hpp"

namespace nsidd::mirror::sim {

namespace fs = std::filesystem;
using registry::kSelf;
using Tables = std::map<Observer, std::map<Nsid, Nsid>>;

inline void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

class Sim final : public Kernel {
public:
    struct Ns {
        std::uint64_t cookie = 0;
        std::vector<fs::path> files; // where discovery can reach it
        bool alive = true;
    };

    Sim() {
        // tmpfs where there is one: thousands of files come and go.
        std::string tmpl = fs::is_directory("/dev/shm") ? "/dev/shm/nsidd-test-mirror-XXXXXX"
                                                        : "/tmp/nsidd-test-mirror-XXXXXX";
        root_ = ::mkdtemp(tmpl.data());
        write(root_ / "proc/sys/kernel/random/boot_id", "b00t\n");
        self_ = create();
        place(self_, root_ / "proc/self/ns/net");
    }
    ~Sim() override { fs::remove_all(root_); }

    int own() const { return self_; } // our own namespace
    netns::Roots roots() const { return {(root_ / "netns").string(), (root_ / "proc").string()}; }
    fs::path root() const { return root_; }

    // ---- the model ----
    std::map<Nsid, int> self;                   // self's table: id -> namespace
    std::map<int, std::map<Nsid, int>> foreign; // other namespaces' tables
    std::map<int, Ns> ns;
    std::deque<registry::Op> queue; // sent, not yet received
    bool lost = false;              // an overrun dropped events since the last receive
    std::size_t cut = 1158;         // entries in one dump of self's table
    std::size_t target_cut = 901;   // entries in one TARGET_NSID dump
    std::size_t questions = 0;      // ids asked of the kernel (each a table walk if present)

    int create() {
        const int n = next_++;
        ns[n].cookie = 4096 + 7 * static_cast<std::uint64_t>(n);
        return n;
    }
    // Makes `n` reachable at `p` (a bind mount under netns/, or /proc/PID/ns/net).
    void place(int n, const fs::path& p) {
        write(p, "");
        struct stat st {};
        ::stat(p.c_str(), &st);
        by_inode_[st.st_ino] = n;
        ns[n].files.push_back(p);
        if (p.parent_path() == root_ / "netns")
            mounts_[p] = st.st_ino;
        if (!batching_)
            write_mountinfo();
    }
    // Runs `f` with the mount table written once at its end (a large `ip -batch`).
    template <typename F> void batch(F f) {
        batching_ = true;
        f();
        batching_ = false;
        write_mountinfo();
    }
    int named(const std::string& name) {
        const int n = create();
        place(n, root_ / "netns" / name);
        return n;
    }
    int with_process(int pid) {
        const int n = create();
        place(n, root_ / "proc" / std::to_string(pid) / "ns/net");
        return n;
    }
    // Removes every file that reaches `n` (it may live on, held by what discovery cannot see).
    void unreach(int n) {
        for (const auto& f : ns[n].files) {
            mounts_.erase(f);
            fs::remove(f);
        }
        ns[n].files.clear();
        if (!batching_)
            write_mountinfo();
    }
    std::optional<Nsid> self_id(int n) const {
        const auto it = self_ids_.find(n);
        return it == self_ids_.end() ? std::nullopt : std::optional<Nsid>(it->second);
    }
    void assign_self(int n, std::optional<Nsid> id = std::nullopt) {
        const Nsid k = id ? *id : test::lowest_free(self);
        if (self.count(k) || self_id(n) || n == self_)
            return; // EEXIST, or our own namespace
        self[k] = n;
        self_ids_[n] = k;
        queue.push_back({registry::Op::Kind::New, kSelf, k, k});
    }
    void assign_foreign(int o, int p) {
        auto& t = foreign[o];
        for (const auto& [id, q] : t)
            if (q == p)
                return;
        const Nsid k = test::lowest_free(t);
        t[k] = p;
        if (auto oid = self_id(o))
            queue.push_back({registry::Op::Kind::New, *oid, k, std::nullopt});
    }
    // One cleanup run: `dying` die together; a racing allocation may reuse a freed id at once.
    void kill(const std::vector<int>& dying, std::mt19937* race = nullptr) {
        std::set<int> d(dying.begin(), dying.end());
        for (int p : dying) {
            unreach(p);
            ns[p].alive = false;
        }
        for (int p : dying) {
            if (auto k = self_id(p)) {
                self.erase(*k);
                self_ids_.erase(p);
                if (race && std::bernoulli_distribution(0.2)(*race))
                    assign_self(create()); // NEW k may come before DEL k
                queue.push_back({registry::Op::Kind::Del, kSelf, *k, *k});
            }
            for (auto& [o, table] : foreign)
                for (auto it = table.begin(); it != table.end();) {
                    if (it->second != p || d.count(o)) {
                        ++it;
                        continue;
                    }
                    if (auto oid = self_id(o))
                        queue.push_back({registry::Op::Kind::Del, *oid, it->first, std::nullopt});
                    it = table.erase(it);
                }
        }
        for (int p : dying)
            foreign.erase(p); // a dying namespace's own table vanishes without a word
    }
    // The receive buffer overflows: what is queued is lost.
    void overrun() {
        queue.clear();
        lost = true;
    }

    // What the mirror must hold: self's table, and in host scope every table self names.
    Tables tables(bool host = false) const {
        Tables out;
        for (const auto& [id, p] : self)
            out[kSelf][id] = id;
        for (const auto& [o, t] : host ? foreign : std::map<int, std::map<Nsid, int>>{})
            if (auto oid = self_id(o))
                for (const auto& [id, p] : t)
                    out[*oid][id] = self_id(p).value_or(-1);
        return out;
    }

    // ---- Kernel ----
    Events receive() override {
        Events out{{queue.begin(), queue.end()}, std::exchange(lost, false)};
        queue.clear();
        return out;
    }
    Result<Dump> dump(std::optional<Observer> target) override {
        const std::map<Nsid, int>* t = &self;
        static const std::map<Nsid, int> empty;
        if (target) {
            const auto o = self.find(*target);
            if (o == self.end())
                return fail_errno(EINVAL); // no such observer
            const auto f = foreign.find(o->second);
            t = f == foreign.end() ? &empty : &f->second;
        }
        Dump out;
        for (const auto& [id, p] : *t) {
            if (out.rows.size() == (target ? target_cut : cut))
                break;
            out.rows.push_back({id, self_id(p)});
        }
        out.maybe_cut = out.rows.size() >= (target ? target_cut : cut);
        return out;
    }
    Result<std::vector<std::optional<Nsid>>> translate(std::span<const Nsid> ids,
                                                       std::optional<Observer> target) override {
        std::vector<std::optional<Nsid>> out;
        for (Nsid k : ids) {
            ++questions;
            const auto p = self.find(k);
            if (p == self.end()) {
                out.emplace_back();
            } else if (!target) {
                out.emplace_back(k);
            } else {
                out.emplace_back();
                const auto o = self.find(*target);
                if (o != self.end() && foreign.count(o->second))
                    for (const auto& [id, q] : foreign.at(o->second))
                        if (q == p->second)
                            out.back() = id;
            }
        }
        return out;
    }
    std::optional<Nsid> own_id() override { return self_id(self_); }
    std::optional<Nsid> own_id_in(Observer target) override {
        ++questions;
        const auto o = self.find(target);
        if (o == self.end() || !foreign.count(o->second))
            return std::nullopt;
        for (const auto& [id, q] : foreign.at(o->second))
            if (q == self_)
                return id;
        return std::nullopt;
    }
    Result<std::uint64_t> cookie(int fd) override {
        const auto n = by_fd(fd);
        if (!n)
            return fail_errno(ENOTTY);
        return ns.at(*n).cookie;
    }
    Result<std::vector<std::optional<std::int32_t>>> ids_of(std::span<const int> fds) override {
        std::vector<std::optional<std::int32_t>> out;
        for (int fd : fds) {
            ++questions;
            const auto n = by_fd(fd);
            out.push_back(n ? self_id(*n) : std::nullopt);
        }
        return out;
    }
    Result<void> assign(int fd) override {
        const auto n = by_fd(fd);
        if (!n)
            return fail_errno(EINVAL);
        assign_self(*n);
        return {};
    }

private:
    std::optional<int> by_fd(int fd) const {
        struct stat st {};
        if (::fstat(fd, &st) < 0)
            return std::nullopt;
        const auto it = by_inode_.find(st.st_ino);
        if (it == by_inode_.end() || !ns.at(it->second).alive)
            return std::nullopt;
        return it->second;
    }
    void write_mountinfo() {
        std::string text = "24 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n";
        for (const auto& [path, inode] : mounts_)
            text += "415 412 0:4 net:[" + std::to_string(inode) + "] " + path.string() +
                    " rw shared:5 - nsfs nsfs rw\n";
        write(root_ / "proc/self/mountinfo", text);
    }

    fs::path root_;
    int self_ = 0;
    int next_ = 1;
    std::map<ino_t, int> by_inode_;
    std::map<int, Nsid> self_ids_; // self's table the other way round
    std::map<fs::path, ino_t> mounts_;
    bool batching_ = false;
};

// The first difference, readably (whole tables are too long to print).
inline std::string diff(const Tables& got, const Tables& want) {
    for (const auto& [o, t] : want) {
        const auto g = got.find(o);
        if (g == got.end())
            return "observer " + std::to_string(o) + " missing";
        for (const auto& [k, v] : t)
            if (!g->second.count(k) || g->second.at(k) != v)
                return "observer " + std::to_string(o) + " nsid " + std::to_string(k) + ": want " +
                       std::to_string(v) +
                       (g->second.count(k) ? ", got " + std::to_string(g->second.at(k)) : ", none");
        for (const auto& [k, v] : g->second)
            if (!t.count(k))
                return "observer " + std::to_string(o) + " nsid " + std::to_string(k) + " extra";
    }
    for (const auto& [o, t] : got)
        if (!want.count(o))
            return "observer " + std::to_string(o) + " extra (" + std::to_string(t.size()) +
                   " rows, first " + std::to_string(t.begin()->first) + " -> " +
                   std::to_string(t.begin()->second) + ")";
    return "";
}

inline Tables tables_of(const registry::Registry& r) {
    Tables out;
    for (const auto& [o, t] : r.tables())
        for (const auto& [k, row] : t.rows)
            out[o][k] = row.entry.current_nsid.value_or(-1);
    return out;
}

// Every identity on self's rows is that of the id's current holder. One case cannot be told
// apart (docs/design.md, "Replaced peers"): the old holder left discovery's reach and a new one
// that nothing reachable holds took its id while the events were lost.
inline void expect_identities(const Sim& sim, const Engine& engine) {
    for (const auto& [k, known] : engine.peers()) {
        ASSERT_TRUE(engine.registry().table(kSelf)->rows.count(k)) << "knowledge of no row " << k;
        const auto& peer = known.identity;
        if (!peer.cookie)
            continue;
        ASSERT_TRUE(sim.self.count(k)) << "row " << k;
        const auto& holder = sim.ns.at(sim.self.at(k));
        if (*peer.cookie == holder.cookie)
            continue;
        const auto named = std::find_if(sim.ns.begin(), sim.ns.end(), [&](const auto& n) {
            return n.second.cookie == *peer.cookie;
        });
        ASSERT_NE(named, sim.ns.end());
        EXPECT_TRUE(holder.files.empty() && named->second.files.empty())
            << "row " << k << " names " << *peer.cookie
            << (named->second.alive ? " (alive, " : " (dead, ") << named->second.files.size()
            << " files), held by " << holder.cookie << " (" << holder.files.size() << " files)";
    }
}

struct FakeClock {
    std::uint64_t now = 1'000'000'000;
    Clock clock() {
        return {[this] { return now; },
                [this] {
                    return now;
                }};
    }
};

inline Engine::Config config(const Sim& sim, bool host = false) {
    return {sim.roots(), 4096, host, false, 60'000'000, {sim.roots().netns_dir + "/cni-*"}};
}

// What a Watch client rebuilds from the changes it is sent: the engine's feed, drained.
struct Replay {
    struct Shown {
        View entry;
        PeerState state;
    };
    std::map<std::pair<Observer, Nsid>, Shown> rows;
    std::size_t updates = 0;
    std::uint64_t seq = 0;
    std::string gap; // a seq out of order, if the feed ever numbered one so

    void take(Engine& engine) {
        engine.feed().drain([&](const Feed::Item& item) {
            if (seq != 0 && item.seq != seq + 1 && gap.empty())
                gap = "seq " + std::to_string(item.seq) + " after " + std::to_string(seq);
            seq = item.seq;
            const std::pair key{item.observer, item.entry.nsid};
            if (item.removed)
                rows.erase(key);
            else
                rows[key] = {item.entry, item.state};
            updates += item.kind == Feed::Kind::Update;
        });
    }
    // Settles the engine (as the daemon does before it answers List), then compares.
    std::string diff(Engine& engine) {
        engine.settle();
        take(engine);
        if (!gap.empty())
            return gap;
        std::size_t count = 0;
        for (const auto& [o, t] : engine.registry().tables())
            for (const auto& [k, row] : t.rows) {
                ++count;
                const auto want = engine.view(o, row.entry);
                const auto state = engine.state(o, row.entry);
                const auto it = rows.find({o, k});
                const auto where = "observer " + std::to_string(o) + " nsid " + std::to_string(k);
                if (it == rows.end())
                    return where + ": never sent";
                const auto& got = it->second;
                if (got.entry.current_nsid != want.current_nsid ||
                    got.entry.since_usec != want.since_usec || got.entry.source != want.source)
                    return where + ": row differs";
                if (!(got.entry.peer == want.peer))
                    return where + ": identity differs (cookie sent " +
                           std::to_string(got.entry.peer.cookie.value_or(0)) + ", now " +
                           std::to_string(want.peer.cookie.value_or(0)) + ")";
                if (got.state != state)
                    return where + ": state sent " + to_string(got.state) + ", now " +
                           to_string(state);
            }
        if (count != rows.size())
            return std::to_string(rows.size() - count) + " rows sent and never removed";
        return "";
    }
};

// Discovery as the daemon runs it: mounts, a whole /proc pass, a resync when a row's peer was
// found replaced.
inline void discover(Engine& engine) {
    engine.discover_mounts();
    while (!engine.discover_processes(SIZE_MAX, false)) {
    }
    if (engine.resync_due()) {
        ASSERT_TRUE(engine.resync(ResyncReason::Replaced));
    }
}

// Applies what is queued; resyncs after a loss, as the daemon does.
inline void settle(Engine& engine) {
    if (engine.apply_events().lost) {
        ASSERT_TRUE(engine.resync(ResyncReason::Overrun));
    }
}

// Random churn on the simulated kernel: namespaces created (named, with a process, hidden) with
// ids in self's table, ids across tables, deaths in bursts that race the reuse of their ids.
struct Churn {
    Sim& sim;
    std::mt19937& rng;
    std::vector<int> alive;
    int pid = 100;

    int roll(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
    // One more namespace with an id; `sparse`: now and then an explicit random id (reachable
    // ones only: a hidden one's sparse id whose NEW was lost past the dump's cut can be found
    // by nothing short of asking every id).
    void create(int step, bool sparse) {
        const int kind = roll(3);
        const int n = kind == 0   ? sim.named("s" + std::to_string(step))
                      : kind == 1 ? sim.with_process(pid++)
                                  : sim.create();
        alive.push_back(n);
        const bool explicit_id = sparse && kind != 2 && roll(10) == 0;
        sim.assign_self(n, explicit_id ? std::optional<Nsid>(roll(100000)) : std::nullopt);
    }
    // One of them gives another an id in its table.
    void link() {
        if (alive.size() >= 2)
            sim.assign_foreign(alive[roll(alive.size())], alive[roll(alive.size())]);
    }
    // Up to six die in one cleanup run.
    void kill_some() {
        std::vector<int> dying;
        for (int i = roll(6); i >= 0 && !alive.empty(); --i) {
            const auto at = alive.begin() + roll(alive.size());
            dying.push_back(*at);
            alive.erase(at);
        }
        sim.kill(dying, &rng);
    }
};

} // namespace nsidd::mirror::sim
