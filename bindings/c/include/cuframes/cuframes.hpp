/*
 * cuframes.hpp: a header-only C++17 wrapper of libcuframes (cuframes.h).
 *
 * - RAII: Subscriber, Frame and Packet release / destroy in their
 *   destructors; Publisher::Slot abandons an uncommitted slot. All are
 *   move-only.
 * - Errors: failures throw cuframes::Error (a std::runtime_error with the
 *   C code in code() and cuframes_last_error()'s details in what()).
 *   "Nothing yet" is not a failure: Subscriber::next / next_packet return
 *   std::nullopt on CUFRAMES_ERR_TIMEOUT and CUFRAMES_ERR_WOULD_BLOCK, and
 *   Publisher::acquire returns std::nullopt on CUFRAMES_ERR_DROPPED.
 *   CUFRAMES_ERR_DISCONNECTED is thrown: the stream is over (see
 *   Subscriber::end_reason) or the publisher is gone; reconnect by making
 *   a new Subscriber (or set SubscriberOptions::reconnect).
 * - Destructors never throw; Frame's destructor releases synchronously
 *   (CUDA: the frame's context is synchronised). Prefer Frame::release_after
 *   on your CUDA stream in GPU pipelines.
 *
 * Thread-safety is the C API's (docs/c-api.md): one thread at a time per
 * Subscriber / Publisher; a Frame or Packet may be used and destroyed on any
 * thread, also after its Subscriber is gone.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */
#ifndef CUFRAMES_HPP
#define CUFRAMES_HPP

#include <cuframes/cuframes.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cuframes {

/// A failed libcuframes call: code() is the cuframes_error, what() names
/// the call, the code's text and the library's message.
class Error : public std::runtime_error {
  public:
    Error(int code, const std::string &what)
        : std::runtime_error(what + ": " + cuframes_strerror(code) + " (" +
                             cuframes_last_error() + ")"),
          code_(code) {}
    /// The cuframes_error code (negative).
    int code() const noexcept { return code_; }

  private:
    int code_;
};

namespace detail {
inline void check(int rc, const char *what) {
    if (rc != CUFRAMES_OK) throw Error(rc, what);
}
inline const char *c_str_or_null(const std::string &s) { return s.empty() ? nullptr : s.c_str(); }
} // namespace detail

/// Library version, "MAJOR.MINOR.PATCH".
inline std::string version() { return cuframes_version(); }

/// Subscriber settings; the defaults are cuframes_subscriber_options_init's.
struct SubscriberOptions {
    std::string key;           ///< Stream key (required).
    std::string consumer_name; ///< Shown in the publisher's log ("": pid-<pid>).
    std::string runtime_dir;   ///< "": the default runtime directory.
    int32_t mode = CUFRAMES_MODE_NEWEST_ONLY;
    int32_t backend = CUFRAMES_BACKEND_AUTO;
    uint32_t subscribe_flags = CUFRAMES_SUBSCRIBE_FRAMES;
    uint32_t connect_timeout_ms = 5000;
    uint32_t wait_publisher_ms = 0;
    bool reconnect = false;
    uint32_t reconnect_first_delay_ms = 50;
    uint32_t reconnect_max_delay_ms = 500;
    int64_t reconnect_give_up_ms = -1;
    std::vector<uint32_t> publisher_uids; ///< Empty: this process's uid (and root).
    bool accept_any_publisher_uid = false;
    /// Trust publishers' legacy CUDA IPC handles (see cuframes.h).
    bool allow_legacy_ipc = false;
    /// Busy-wait before sleeping in next() with a timeout, µs (see cuframes.h).
    uint32_t wait_spin_us = 50;
    /// Spin across the expected moment of the next frame (see cuframes.h).
    bool wait_anticipate = true;
};

/// A leased frame; the destructor releases it. Valid pointers only while
/// it lives (or until release / release_after).
class Frame {
  public:
    Frame() noexcept = default;
    explicit Frame(cuframes_frame_t *f) noexcept : f_(f) {}
    Frame(Frame &&o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
    Frame &operator=(Frame &&o) noexcept {
        if (this != &o) {
            reset();
            f_ = std::exchange(o.f_, nullptr);
        }
        return *this;
    }
    Frame(const Frame &) = delete;
    Frame &operator=(const Frame &) = delete;
    ~Frame() { reset(); }

    explicit operator bool() const noexcept { return f_ != nullptr; }
    cuframes_frame_t *get() const noexcept { return f_; }
    /// Gives up ownership: the caller releases the handle.
    cuframes_frame_t *detach() noexcept { return std::exchange(f_, nullptr); }

    /// Everything at once (planes, pts, flags...).
    cuframes_frame_info_t info() const {
        cuframes_frame_info_t i{};
        i.struct_size = sizeof i;
        detail::check(cuframes_frame_get_info(f_, &i), "cuframes_frame_get_info");
        return i;
    }
    uint32_t width() const noexcept { return cuframes_frame_width(f_); }
    uint32_t height() const noexcept { return cuframes_frame_height(f_); }
    uint32_t pixel_format() const noexcept { return cuframes_frame_pixel_format(f_); }
    int32_t memory() const noexcept { return cuframes_frame_memory(f_); }
    uint64_t seq() const noexcept { return cuframes_frame_seq(f_); }
    int64_t pts_ns() const noexcept { return cuframes_frame_pts_ns(f_); }
    uint64_t flags() const noexcept { return cuframes_frame_flags(f_); }
    uint64_t source_index() const noexcept { return cuframes_frame_source_index(f_); }
    uint32_t plane_count() const noexcept { return cuframes_frame_plane_count(f_); }
    /// Host pointer of a plane (nullptr for CUDA frames).
    const void *plane_data(uint32_t i) const noexcept { return cuframes_frame_plane_data(f_, i); }
    /// CUdeviceptr of a plane (0 for host frames).
    uint64_t plane_device_ptr(uint32_t i) const noexcept {
        return cuframes_frame_plane_device_ptr(f_, i);
    }
    size_t pitch(uint32_t i) const noexcept { return cuframes_frame_plane_pitch(f_, i); }
    size_t row_bytes(uint32_t i) const noexcept { return cuframes_frame_plane_row_bytes(f_, i); }
    size_t rows(uint32_t i) const noexcept { return cuframes_frame_plane_rows(f_, i); }
    /// The earlier C++ wrapper's accessors.
    void *cuda_ptr() const noexcept { return cuframes_frame_cuda_ptr(f_); }
    int32_t pitch_y() const noexcept { return cuframes_frame_pitch_y(f_); }
    int32_t pitch_uv() const noexcept { return cuframes_frame_pitch_uv(f_); }
    /// Whether the lease still holds (false: revoked, data may be torn).
    bool is_valid() const noexcept { return cuframes_frame_is_valid(f_) == 1; }

    /// Releases now; false if the publisher had revoked the lease (what was
    /// read may be torn). The Frame is empty afterwards.
    bool release() {
        int rc = cuframes_frame_release(std::exchange(f_, nullptr));
        if (rc == CUFRAMES_ERR_LEASE_REVOKED) return false;
        detail::check(rc, "cuframes_frame_release");
        return true;
    }
    /// CUDA frames: returns the lease once the work queued on cu_stream (a
    /// CUstream) so far completed, without blocking. The Frame is empty
    /// afterwards (unless this throws CUFRAMES_ERR_UNSUPPORTED for a host
    /// frame, which stays leased).
    void release_after(void *cu_stream) {
        int rc = cuframes_subscriber_release_after(nullptr, f_, cu_stream);
        if (rc != CUFRAMES_ERR_UNSUPPORTED) f_ = nullptr;
        detail::check(rc, "cuframes_subscriber_release_after");
    }

  private:
    void reset() noexcept {
        if (f_) cuframes_frame_release(std::exchange(f_, nullptr));
    }
    cuframes_frame_t *f_ = nullptr;
};

/// An encoded packet (a copy); the destructor frees it.
class Packet {
  public:
    Packet() noexcept = default;
    explicit Packet(cuframes_packet_t *p) noexcept : p_(p) {}
    Packet(Packet &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Packet &operator=(Packet &&o) noexcept {
        if (this != &o) {
            if (p_) cuframes_packet_release(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    Packet(const Packet &) = delete;
    Packet &operator=(const Packet &) = delete;
    ~Packet() {
        if (p_) cuframes_packet_release(p_);
    }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    cuframes_packet_t *get() const noexcept { return p_; }
    /// One access unit, Annex B.
    const uint8_t *data() const noexcept {
        return static_cast<const uint8_t *>(cuframes_packet_data(p_));
    }
    size_t size() const noexcept { return cuframes_packet_size(p_); }
    int64_t pts() const noexcept { return cuframes_packet_pts(p_); }
    int64_t dts() const noexcept { return cuframes_packet_dts(p_); }
    uint32_t flags() const noexcept { return cuframes_packet_flags(p_); }
    uint64_t seq() const noexcept { return cuframes_packet_seq(p_); }
    uint64_t skipped() const noexcept { return cuframes_packet_skipped(p_); }

  private:
    cuframes_packet_t *p_ = nullptr;
};

/// The packet ring's codec: FFmpeg AVCodecID and Annex B extradata.
struct CodecParams {
    uint32_t codec_id = 0;
    std::vector<uint8_t> extradata;
};

/// A connection to one publisher; the destructor closes it (frames and
/// packets already handed out stay valid).
class Subscriber {
  public:
    /// Connects; throws Error (e.g. CUFRAMES_ERR_NO_PUBLISHER).
    explicit Subscriber(const SubscriberOptions &o) {
        cuframes_subscriber_options_t c;
        detail::check(cuframes_subscriber_options_init(&c), "cuframes_subscriber_options_init");
        c.key = o.key.c_str();
        c.consumer_name = detail::c_str_or_null(o.consumer_name);
        c.runtime_dir = detail::c_str_or_null(o.runtime_dir);
        c.mode = o.mode;
        c.backend = o.backend;
        c.subscribe_flags = o.subscribe_flags;
        c.connect_timeout_ms = o.connect_timeout_ms;
        c.wait_publisher_ms = o.wait_publisher_ms;
        c.reconnect = o.reconnect ? 1 : 0;
        c.reconnect_first_delay_ms = o.reconnect_first_delay_ms;
        c.reconnect_max_delay_ms = o.reconnect_max_delay_ms;
        c.reconnect_give_up_ms = o.reconnect_give_up_ms;
        c.publisher_uids = o.publisher_uids.empty() ? nullptr : o.publisher_uids.data();
        c.publisher_uid_count = o.publisher_uids.size();
        c.accept_any_publisher_uid = o.accept_any_publisher_uid ? 1 : 0;
        c.allow_legacy_ipc = o.allow_legacy_ipc ? 1 : 0;
        c.wait_spin_us = o.wait_spin_us;
        c.wait_anticipate = o.wait_anticipate ? 1 : 0;
        detail::check(cuframes_subscriber_create(&c, &s_), "cuframes_subscriber_create");
    }
    Subscriber(Subscriber &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Subscriber &operator=(Subscriber &&o) noexcept {
        if (this != &o) {
            if (s_) cuframes_subscriber_destroy(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    Subscriber(const Subscriber &) = delete;
    Subscriber &operator=(const Subscriber &) = delete;
    ~Subscriber() {
        if (s_) cuframes_subscriber_destroy(s_);
    }
    cuframes_subscriber_t *get() const noexcept { return s_; }

    /// The next frame, or std::nullopt when none arrived within timeout_ms
    /// (negative: wait for one; 0: do not wait). cu_stream: see
    /// cuframes_subscriber_next. Throws Error (CUFRAMES_ERR_DISCONNECTED at
    /// the end).
    std::optional<Frame> next(void *cu_stream, int32_t timeout_ms) {
        cuframes_frame_t *f = nullptr;
        int rc = cuframes_subscriber_next(s_, cu_stream, &f, timeout_ms);
        if (rc == CUFRAMES_ERR_TIMEOUT || rc == CUFRAMES_ERR_WOULD_BLOCK) return std::nullopt;
        detail::check(rc, "cuframes_subscriber_next");
        return Frame(f);
    }
    /// next(nullptr, timeout_ms).
    std::optional<Frame> next(int32_t timeout_ms) { return next(nullptr, timeout_ms); }

    /// The next packet, or std::nullopt on timeout. Throws Error.
    std::optional<Packet> next_packet(int32_t timeout_ms) {
        cuframes_packet_t *p = nullptr;
        int rc = cuframes_subscriber_next_packet(s_, &p, timeout_ms);
        if (rc == CUFRAMES_ERR_TIMEOUT || rc == CUFRAMES_ERR_WOULD_BLOCK) return std::nullopt;
        detail::check(rc, "cuframes_subscriber_next_packet");
        return Packet(p);
    }

    /// Codec id and extradata (copied). Throws Error
    /// (CUFRAMES_ERR_NO_CODEC_PARAMS before the publisher set them).
    CodecParams codec_params() {
        CodecParams cp;
        const void *ex = nullptr;
        size_t n = 0;
        detail::check(cuframes_subscriber_get_codec_params(s_, &cp.codec_id, &ex, &n),
                      "cuframes_subscriber_get_codec_params");
        const uint8_t *b = static_cast<const uint8_t *>(ex);
        cp.extradata.assign(b, b + n);
        return cp;
    }

    cuframes_stream_info_t stream() const {
        cuframes_stream_info_t i{};
        i.struct_size = sizeof i;
        detail::check(cuframes_subscriber_get_stream(s_, &i), "cuframes_subscriber_get_stream");
        return i;
    }
    cuframes_subscriber_stats_t stats() const {
        cuframes_subscriber_stats_t st{};
        st.struct_size = sizeof st;
        detail::check(cuframes_subscriber_get_stats(s_, &st), "cuframes_subscriber_get_stats");
        return st;
    }
    /// A cuframes_end_reason (CUFRAMES_END_NONE while connected).
    int end_reason() const {
        int r = cuframes_subscriber_end_reason(s_);
        if (r < 0) throw Error(r, "cuframes_subscriber_end_reason");
        return r;
    }

  private:
    cuframes_subscriber_t *s_ = nullptr;
};

/// Publisher settings; the defaults are cuframes_publisher_options_init's.
struct PublisherOptions {
    std::string key;         ///< Stream key (required).
    std::string runtime_dir; ///< "": the default runtime directory.
    uint32_t width = 0, height = 0;
    uint32_t pixel_format = CUFRAMES_FORMAT_NV12;
    uint32_t codec = CUFRAMES_CODEC_UNKNOWN;
    uint32_t fps_num = 0, fps_den = 0;
    uint32_t slots = 8;
    int32_t policy = CUFRAMES_POLICY_DROP_FRAME;
    uint32_t wait_timeout_ms = 2000;
    uint32_t lease_timeout_ms = 5000;
    uint32_t max_subscribers = 64;
    uint32_t socket_mode = 0660;
    int32_t backend = CUFRAMES_BACKEND_HOST;
    int32_t cuda_memory = CUFRAMES_CUDA_MEMORY_VMM_FD;
    int32_t cuda_sync = CUFRAMES_CUDA_SYNC_HOST_FENCE;
    uint32_t cuda_device = 0;
    bool packets = false;
    uint32_t packet_codec_id = 0;
    uint32_t packet_slots = 64;
    uint32_t packet_data_size = 8u << 20;
    uint32_t max_packet_size = 2u << 20;
};

/// A publisher of one key; the destructor stops it (GOODBYE shutdown),
/// finish() ends the stream instead.
class Publisher {
  public:
    /// A claimed slot: write the frame into planes(), then commit(). The
    /// destructor abandons an uncommitted slot. Must not outlive its
    /// Publisher.
    class Slot {
      public:
        Slot(Slot &&o) noexcept : p_(std::exchange(o.p_, nullptr)), s_(o.s_) {}
        Slot &operator=(Slot &&) = delete;
        Slot(const Slot &) = delete;
        Slot &operator=(const Slot &) = delete;
        ~Slot() {
            if (p_) cuframes_publisher_abandon(p_);
        }
        const cuframes_slot_t &info() const noexcept { return s_; }
        const cuframes_slot_plane_t &plane(uint32_t i) const { return s_.planes[i]; }
        /// Publishes the frame; returns its sequence number. cu_stream: the
        /// CUDA stream it was written on (CUDA slots). Throws Error.
        uint64_t commit(int64_t pts_ns = CUFRAMES_TS_NONE, uint64_t flags = 0,
                        void *cu_stream = nullptr) {
            cuframes_frame_meta_t m;
            detail::check(cuframes_frame_meta_init(&m), "cuframes_frame_meta_init");
            m.pts_ns = pts_ns;
            m.flags = flags;
            uint64_t seq = 0;
            detail::check(cuframes_publisher_commit(std::exchange(p_, nullptr), &m, cu_stream, &seq),
                          "cuframes_publisher_commit");
            return seq;
        }

      private:
        friend class Publisher;
        Slot(cuframes_publisher_t *p, const cuframes_slot_t &s) : p_(p), s_(s) {}
        cuframes_publisher_t *p_;
        cuframes_slot_t s_;
    };

    /// Starts publishing; throws Error (e.g. CUFRAMES_ERR_ALREADY_EXISTS).
    explicit Publisher(const PublisherOptions &o) {
        cuframes_publisher_options_t c;
        detail::check(cuframes_publisher_options_init(&c), "cuframes_publisher_options_init");
        c.key = o.key.c_str();
        c.runtime_dir = detail::c_str_or_null(o.runtime_dir);
        c.width = o.width;
        c.height = o.height;
        c.pixel_format = o.pixel_format;
        c.codec = o.codec;
        c.fps_num = o.fps_num;
        c.fps_den = o.fps_den;
        c.slots = o.slots;
        c.policy = o.policy;
        c.wait_timeout_ms = o.wait_timeout_ms;
        c.lease_timeout_ms = o.lease_timeout_ms;
        c.max_subscribers = o.max_subscribers;
        c.socket_mode = o.socket_mode;
        c.backend = o.backend;
        c.cuda_memory = o.cuda_memory;
        c.cuda_sync = o.cuda_sync;
        c.cuda_device = o.cuda_device;
        c.packets = o.packets ? 1 : 0;
        c.packet_codec_id = o.packet_codec_id;
        c.packet_slots = o.packet_slots;
        c.packet_data_size = o.packet_data_size;
        c.max_packet_size = o.max_packet_size;
        detail::check(cuframes_publisher_create(&c, &p_), "cuframes_publisher_create");
    }
    Publisher(Publisher &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Publisher &operator=(Publisher &&) = delete;
    Publisher(const Publisher &) = delete;
    Publisher &operator=(const Publisher &) = delete;
    ~Publisher() {
        if (p_) cuframes_publisher_destroy(p_);
    }
    cuframes_publisher_t *get() const noexcept { return p_; }

    /// A slot for the next frame, or std::nullopt when every slot is leased
    /// (the frame is counted as dropped). Throws Error.
    std::optional<Slot> acquire() {
        cuframes_slot_t s{};
        s.struct_size = sizeof s;
        int rc = cuframes_publisher_acquire(p_, &s);
        if (rc == CUFRAMES_ERR_DROPPED) return std::nullopt;
        detail::check(rc, "cuframes_publisher_acquire");
        return Slot(p_, s);
    }
    void publish_packet(const void *data, size_t size, int64_t pts_ns, int64_t dts_ns,
                        uint32_t flags) {
        detail::check(cuframes_publisher_publish_packet(p_, data, size, pts_ns, dts_ns, flags),
                      "cuframes_publisher_publish_packet");
    }
    void set_codec_extradata(const void *data, size_t size) {
        detail::check(cuframes_publisher_set_codec_extradata(p_, data, size),
                      "cuframes_publisher_set_codec_extradata");
    }
    /// Whether n subscribers connected within timeout_ms.
    bool wait_for_subscribers(uint32_t n, int32_t timeout_ms) {
        int rc = cuframes_publisher_wait_for_subscribers(p_, n, timeout_ms);
        if (rc == CUFRAMES_ERR_TIMEOUT) return false;
        detail::check(rc, "cuframes_publisher_wait_for_subscribers");
        return true;
    }
    /// Ends the stream (GOODBYE end of stream); the Publisher is empty after.
    void finish() {
        detail::check(cuframes_publisher_finish(std::exchange(p_, nullptr)),
                      "cuframes_publisher_finish");
    }

  private:
    cuframes_publisher_t *p_ = nullptr;
};

} // namespace cuframes

#endif // CUFRAMES_HPP
