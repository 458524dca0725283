// C++ test of cuframes.hpp: receives every frame of a stream (InOrder, host
// memory) through cuframes::Subscriber, writes "source_index size md5" per
// frame to OUT (every tenth frame released on another thread), then checks
// the wrapper's error handling and its Publisher
// in this process (RAII release, abandon, exceptions with the C codes).
//
// usage: frames_cpp KEY RUNTIME_DIR OUT
#include <cuframes/cuframes.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

extern "C" {
#include "../c/md5.h"
}

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::cerr << "frames.cpp:" << __LINE__ << ": check failed: " #cond << "\n";   \
            std::exit(1);                                                                 \
        }                                                                                 \
    } while (0)

template <class F> static int error_code(F &&f) {
    try {
        f();
    } catch (const cuframes::Error &e) {
        return e.code();
    }
    return CUFRAMES_OK;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        std::cerr << "usage: frames_cpp KEY RUNTIME_DIR OUT\n";
        return 2;
    }
    std::ofstream out(argv[3]);
    cuframes::SubscriberOptions o;
    o.key = argv[1];
    o.runtime_dir = argv[2];
    o.consumer_name = "frames.cpp";
    o.mode = CUFRAMES_MODE_IN_ORDER;
    o.wait_publisher_ms = 10000;
    cuframes::Subscriber sub(o);
    CHECK(sub.stream().memory == CUFRAMES_MEMORY_HOST);
    unsigned n = 0;
    for (;;) {
        std::optional<cuframes::Frame> f;
        try {
            f = sub.next(5000);
        } catch (const cuframes::Error &e) {
            if (e.code() == CUFRAMES_ERR_DISCONNECTED) break;
            throw;
        }
        CHECK(f.has_value()); // no timeout while the publisher runs
        md5_ctx md5;
        md5_init(&md5);
        size_t size = 0;
        for (uint32_t p = 0; p < f->plane_count(); p++) {
            auto *data = static_cast<const unsigned char *>(f->plane_data(p));
            for (size_t r = 0; r < f->rows(p); r++) md5_update(&md5, data + r * f->pitch(p), f->row_bytes(p));
            size += f->row_bytes(p) * f->rows(p);
        }
        char hex[33];
        md5_final_hex(&md5, hex);
        uint64_t index = f->source_index();
        if (n % 10 == 5) {
            // Frames are not tied to the receiving thread: release on another.
            std::thread([fr = std::move(*f)]() mutable { CHECK(fr.release()); }).join();
            CHECK(!*f);
        } else if (n % 2 == 0) {
            CHECK(f->release()); // explicit, not revoked
            CHECK(!*f);
        } // other odd frames: released by ~Frame
        out << index << " " << size << " " << hex << "\n";
        n++;
    }
    CHECK(sub.end_reason() == CUFRAMES_END_OF_STREAM);
    CHECK(sub.stats().received == n);
    std::cerr << "frames.cpp: " << n << " frames\n";

    // The wrapper's errors and publisher, in this process.
    CHECK(error_code([&] {
              cuframes::SubscriberOptions bad;
              bad.key = "nobody-here";
              bad.runtime_dir = argv[2];
              cuframes::Subscriber s(bad);
          }) == CUFRAMES_ERR_NO_PUBLISHER);
    cuframes::PublisherOptions po;
    po.key = "cpp-pub";
    po.runtime_dir = argv[2];
    po.width = 32;
    po.height = 16;
    po.slots = 2;
    po.packets = true;
    po.packet_codec_id = CUFRAMES_AV_CODEC_ID_HEVC;
    cuframes::Publisher pub(po);
    CHECK(error_code([&] { cuframes::Publisher again(po); }) == CUFRAMES_ERR_ALREADY_EXISTS);
    cuframes::SubscriberOptions so;
    so.key = "cpp-pub";
    so.runtime_dir = argv[2];
    so.mode = CUFRAMES_MODE_IN_ORDER;
    so.subscribe_flags = CUFRAMES_SUBSCRIBE_FRAMES | CUFRAMES_SUBSCRIBE_PACKETS;
    cuframes::Subscriber s2(so);
    CHECK(error_code([&] { s2.codec_params(); }) == CUFRAMES_ERR_NO_CODEC_PARAMS);
    const uint8_t vps[] = {0, 0, 0, 1, 0x40, 1};
    pub.set_codec_extradata(vps, sizeof vps);
    CHECK(s2.codec_params().extradata.size() == sizeof vps);
    {
        auto slot = pub.acquire();
        CHECK(slot.has_value());
        std::memset(slot->plane(0).data, 7, slot->plane(0).pitch * slot->plane(0).rows);
        // Not committed: abandoned by ~Slot, nothing published.
    }
    CHECK(!s2.next(0).has_value());
    auto slot = pub.acquire();
    CHECK(slot.has_value());
    std::memset(slot->plane(0).data, 9, slot->plane(0).pitch * slot->plane(0).rows);
    CHECK(slot->commit(123, CUFRAMES_FRAME_FLAG_KEY) == 1);
    auto f = s2.next(5000);
    CHECK(f && f->seq() == 1 && f->pts_ns() == 123 && f->width() == 32);
    CHECK(static_cast<const unsigned char *>(f->plane_data(0))[0] == 9);
    CHECK(error_code([&] { f->release_after(nullptr); }) == CUFRAMES_ERR_UNSUPPORTED);
    CHECK(f->is_valid()); // still leased after the refused release_after
    pub.publish_packet(vps, sizeof vps, 5, 5, CUFRAMES_PKT_FLAG_KEY);
    auto p = s2.next_packet(5000);
    CHECK(p && p->size() == sizeof vps && p->pts() == 5);
    pub.finish();
    f.reset(); // released after the publisher ended: still fine
    CHECK(error_code([&] {
              while (s2.next(2000)) {
              }
          }) == CUFRAMES_ERR_DISCONNECTED);
    std::cerr << "frames.cpp: wrapper checks passed\n";
    return 0;
}
