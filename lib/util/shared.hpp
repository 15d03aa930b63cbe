// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <memory>
#include <string>
#include <utility>

namespace nsidd {

/// An immutable value shared by every copy (a pointer copy, not a deep one), compared by value.
/// For the parts of an identity that the catalog and every registry row, change record and
/// history entry would otherwise each hold a copy of. Empty reads as a default T.
template <typename T> class Shared {
public:
    Shared() = default;
    explicit Shared(T value) : p_(std::make_shared<const T>(std::move(value))) {}

    const T& operator*() const noexcept { return p_ ? *p_ : empty(); }
    const T* operator->() const noexcept { return &**this; }
    /// Whether a value was set (an empty Shared is "unknown").
    explicit operator bool() const noexcept { return p_ != nullptr; }
    bool operator==(const Shared& other) const {
        return p_ == other.p_ || (bool(*this) == bool(other) && **this == *other);
    }

private:
    static const T& empty() noexcept {
        static const T value{};
        return value;
    }
    std::shared_ptr<const T> p_;
};

/// Whose a namespace is, read from the cgroup of a process inside it (or of one holding it).
/// Parts the path does not say are empty.
struct Owner {
    std::string unit;      ///< the innermost systemd unit (.service or .scope)
    std::string runtime;   ///< docker, containerd, cri-o, podman, systemd-nspawn
    std::string container; ///< the runtime's container id (or the machine's name)
    std::string pod_uid;   ///< the Kubernetes pod, from a kubepods cgroup
    bool operator==(const Owner&) const = default;
};

} // namespace nsidd
