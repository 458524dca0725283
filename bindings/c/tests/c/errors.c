/* C error-path test: every documented error code of the paths below is
 * returned, messages are set, nothing crashes (also under ASan).
 * Publishes with the C publisher API in this process, so it needs only
 * a runtime directory.
 *
 * usage: errors RUNTIME_DIR */
#include <cuframes/cuframes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define EXPECT(expr, want)                                                                    \
    do {                                                                                      \
        int got_ = (expr);                                                                    \
        if (got_ != (want)) {                                                                 \
            fprintf(stderr, "errors.c:%d: %s returned %d (%s), expected %s (%d); last error: %s\n", \
                    __LINE__, #expr, got_, cuframes_strerror(got_), #want, (int)(want),        \
                    cuframes_last_error());                                                   \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "errors.c:%d: check failed: %s (last error: %s)\n", __LINE__,     \
                    #cond, cuframes_last_error());                                            \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

static cuframes_subscriber_options_t sub_opts(const char *dir, const char *key) {
    cuframes_subscriber_options_t o;
    cuframes_subscriber_options_init(&o);
    o.key = key;
    o.runtime_dir = dir;
    o.backend = CUFRAMES_BACKEND_HOST;
    return o;
}

static cuframes_publisher_options_t pub_opts(const char *dir, const char *key) {
    cuframes_publisher_options_t o;
    cuframes_publisher_options_init(&o);
    o.key = key;
    o.runtime_dir = dir;
    o.width = 64;
    o.height = 48;
    o.slots = 2;
    return o;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: errors RUNTIME_DIR\n");
        return 2;
    }
    const char *dir = argv[1];

    /* Version and texts. */
    char want_version[32];
    snprintf(want_version, sizeof want_version, "%d.%d.%d", CUFRAMES_VERSION_MAJOR,
             CUFRAMES_VERSION_MINOR, CUFRAMES_VERSION_PATCH);
    CHECK(strcmp(cuframes_version(), want_version) == 0);
    CHECK(strcmp(cuframes_strerror(CUFRAMES_OK), "success") == 0);
    CHECK(strcmp(cuframes_strerror(12345), "unknown error code") == 0);
    CHECK(strcmp(cuframes_strerror(CUFRAMES_ERR_TIMEOUT), cuframes_strerror(CUFRAMES_ERR_DISCONNECTED)) != 0);
    /* The earlier library's values. */
    CHECK(CUFRAMES_ERR_TIMEOUT == -7 && CUFRAMES_ERR_DISCONNECTED == -9 &&
          CUFRAMES_ERR_WOULD_BLOCK == -11 && CUFRAMES_ERR_TOO_MANY == -12 &&
          CUFRAMES_ERR_PACKET_OVERSIZED == -20 && CUFRAMES_ERR_NO_PACKET_RING == -21 &&
          CUFRAMES_ERR_NO_CODEC_PARAMS == -22 && CUFRAMES_ERR_INTERNAL == -100);
    CHECK(CUFRAMES_MODE_STRICT_ORDER == CUFRAMES_MODE_IN_ORDER);

    /* NULL arguments and option structs. */
    cuframes_subscriber_t *sub = NULL;
    cuframes_subscriber_options_t so = sub_opts(dir, "nobody");
    /* (name): the function itself; the macro passes sizeof *(opts). */
    EXPECT((cuframes_subscriber_options_init)(NULL), CUFRAMES_ERR_INVALID_ARG);
    EXPECT(cuframes_subscriber_options_init_sized(NULL, sizeof so), CUFRAMES_ERR_INVALID_ARG);
    EXPECT(cuframes_subscriber_options_init_sized(&so, 8), CUFRAMES_ERR_INVALID_ARG);
    {
        /* A program built before the wait fields calls the function: it
           fills the first version only and says so in struct_size. */
        cuframes_subscriber_options_t old;
        memset(&old, 0xAB, sizeof old);
        EXPECT((cuframes_subscriber_options_init)(&old), CUFRAMES_OK);
        CHECK(old.struct_size == offsetof(cuframes_subscriber_options_t, wait_spin_us));
        CHECK(old.wait_spin_us == 0xABABABABu && old.wait_anticipate == 0xABABABABu);
        CHECK(old.mode == CUFRAMES_MODE_NEWEST_ONLY && old.connect_timeout_ms == 5000);
        /* Through the macro: every field of this header. */
        EXPECT(cuframes_subscriber_options_init(&old), CUFRAMES_OK);
        CHECK(old.struct_size == sizeof old && old.wait_spin_us == 50 && old.wait_anticipate == 1);
    }
    so = sub_opts(dir, "nobody");
    EXPECT(cuframes_subscriber_create(NULL, &sub), CUFRAMES_ERR_INVALID_ARG);
    CHECK(strstr(cuframes_last_error(), "opts is NULL") != NULL);
    EXPECT(cuframes_subscriber_create(&so, NULL), CUFRAMES_ERR_INVALID_ARG);
    so.struct_size = 0;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_INVALID_ARG);
    CHECK(strstr(cuframes_last_error(), "struct_size") != NULL);
    so = sub_opts(dir, NULL);
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_INVALID_ARG);
    so = sub_opts(dir, "nobody");
    so.mode = 7;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_INVALID_ARG);
    so = sub_opts(dir, "nobody");
    so.subscribe_flags = 0;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_INVALID_ARG);
    so = sub_opts(dir, "nobody");
    CHECK(so.wait_spin_us == 50 && so.wait_anticipate == 1); /* the defaults */
    so.wait_spin_us = 1000001;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_INVALID_ARG);
    CHECK(strstr(cuframes_last_error(), "wait_spin_us") != NULL);
    /* A caller built before the wait fields: bytes past its struct_size are
       not read (the defaults apply), so it gets as far as the lookup. */
    so.struct_size = offsetof(cuframes_subscriber_options_t, wait_spin_us);
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_NO_PUBLISHER);
    CHECK(sub == NULL); /* unchanged on error */

    /* Bad key, no publisher. */
    so = sub_opts(dir, "bad key/../x");
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_BAD_KEY);
    so = sub_opts(dir, "nobody");
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_NO_PUBLISHER);
    CHECK(strstr(cuframes_last_error(), "nobody") != NULL);
    so.wait_publisher_ms = 100; /* retries, then gives up the same way */
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_NO_PUBLISHER);

    /* The CUDA backend on a machine without a driver. */
    so = sub_opts(dir, "nobody");
    so.backend = CUFRAMES_BACKEND_CUDA;
    int rc = cuframes_subscriber_create(&so, &sub);
    CHECK(rc == CUFRAMES_ERR_CUDA || rc == CUFRAMES_ERR_NO_PUBLISHER);

    /* NULL and made-up handles. */
    cuframes_frame_t *frame = NULL;
    EXPECT(cuframes_subscriber_next(NULL, NULL, &frame, 0), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_next((cuframes_subscriber_t *)(uintptr_t)0x1234, NULL, &frame, 0),
           CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_destroy(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_release(NULL, NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_frame_release(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_packet_release(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_publisher_destroy(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_end_reason(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_frame_is_valid(NULL), CUFRAMES_ERR_INVALID_HANDLE);
    CHECK(cuframes_frame_width(NULL) == 0 && cuframes_frame_seq(NULL) == 0);
    CHECK(cuframes_frame_pts_ns(NULL) == CUFRAMES_TS_NONE);
    CHECK(cuframes_frame_plane_data(NULL, 0) == NULL && cuframes_frame_cuda_ptr(NULL) == NULL);
    CHECK(strstr(cuframes_last_error(), "invalid frame handle") != NULL);
    CHECK(cuframes_packet_data(NULL) == NULL && cuframes_packet_size(NULL) == 0);
    int32_t w = 5, h = 5;
    cuframes_frame_size(NULL, &w, &h);
    CHECK(w == 0 && h == 0);

    /* A publisher in this process, and a subscriber of it. */
    cuframes_publisher_t *pub = NULL;
    cuframes_publisher_options_t po = pub_opts(dir, "errs");
    EXPECT(cuframes_publisher_create(NULL, &pub), CUFRAMES_ERR_INVALID_ARG);
    po.width = 0;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_INVALID_ARG);
    po = pub_opts(dir, "errs");
    po.slots = 1;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_INVALID_ARG);
    po = pub_opts(dir, "errs");
    po.pixel_format = 99;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_INVALID_ARG);
    po = pub_opts(dir, "bad key");
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_BAD_KEY);
    po = pub_opts(dir, "errs"); /* C cannot write Vulkan slots */
    po.backend = CUFRAMES_BACKEND_VULKAN;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_UNSUPPORTED);
    po.backend = 99;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_ERR_INVALID_ARG);
    po = pub_opts(dir, "errs");
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_OK);
    cuframes_publisher_t *pub2 = NULL;
    EXPECT(cuframes_publisher_create(&po, &pub2), CUFRAMES_ERR_ALREADY_EXISTS);

    /* Packets on a publisher without a packet ring. */
    unsigned char bytes[16] = {0, 0, 0, 1, 0x65};
    EXPECT(cuframes_publisher_publish_packet(pub, bytes, sizeof bytes, 0, 0, CUFRAMES_PKT_FLAG_KEY),
           CUFRAMES_ERR_NO_PACKET_RING);
    EXPECT(cuframes_publisher_set_codec_extradata(pub, bytes, 4), CUFRAMES_ERR_NO_PACKET_RING);
    so = sub_opts(dir, "errs");
    so.subscribe_flags = CUFRAMES_SUBSCRIBE_PACKETS;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_ERR_NO_PACKET_RING);

    /* Slot misuse. */
    cuframes_slot_t slot;
    slot.struct_size = sizeof slot;
    EXPECT(cuframes_publisher_commit(pub, NULL, NULL, NULL), CUFRAMES_ERR_UNSUPPORTED);
    EXPECT(cuframes_publisher_abandon(pub), CUFRAMES_ERR_UNSUPPORTED);
    EXPECT(cuframes_publisher_acquire(pub, NULL), CUFRAMES_ERR_INVALID_ARG);
    EXPECT(cuframes_publisher_acquire(pub, &slot), CUFRAMES_OK);
    CHECK(slot.memory == CUFRAMES_MEMORY_HOST && slot.plane_count == 2);
    CHECK(slot.planes[0].data != NULL && slot.planes[0].rows == 48 && slot.planes[1].rows == 24);
    EXPECT(cuframes_publisher_acquire(pub, &slot), CUFRAMES_ERR_UNSUPPORTED);
    EXPECT(cuframes_publisher_subscriber_count(pub), CUFRAMES_ERR_UNSUPPORTED);
    EXPECT(cuframes_publisher_abandon(pub), CUFRAMES_OK);
    EXPECT(cuframes_publisher_subscriber_count(pub), 0);

    /* A subscriber: timeout and would-block while nothing is published. */
    so = sub_opts(dir, "errs");
    so.mode = CUFRAMES_MODE_IN_ORDER;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_OK);
    EXPECT(cuframes_publisher_wait_for_subscribers(pub, 1, 5000), CUFRAMES_OK);
    EXPECT(cuframes_publisher_wait_for_subscribers(pub, 2, 10), CUFRAMES_ERR_TIMEOUT);
    EXPECT(cuframes_subscriber_next(sub, NULL, &frame, 50), CUFRAMES_ERR_TIMEOUT);
    EXPECT(cuframes_subscriber_next(sub, NULL, &frame, 0), CUFRAMES_ERR_WOULD_BLOCK);
    EXPECT(cuframes_subscriber_next(sub, NULL, NULL, 0), CUFRAMES_ERR_INVALID_ARG);
    cuframes_packet_t *pkt = NULL;
    EXPECT(cuframes_subscriber_next_packet(sub, &pkt, 0), CUFRAMES_ERR_NOT_SUBSCRIBED);
    uint32_t codec = 0;
    EXPECT(cuframes_subscriber_get_codec_params(sub, &codec, NULL, NULL), CUFRAMES_ERR_NOT_SUBSCRIBED);
    cuframes_stream_info_t si;
    si.struct_size = 0;
    EXPECT(cuframes_subscriber_get_stream(sub, &si), CUFRAMES_ERR_INVALID_ARG);
    si.struct_size = sizeof si;
    EXPECT(cuframes_subscriber_get_stream(sub, &si), CUFRAMES_OK);
    CHECK(si.width == 64 && si.height == 48 && si.pixel_format == CUFRAMES_FORMAT_NV12);
    EXPECT(cuframes_subscriber_end_reason(sub), CUFRAMES_END_NONE);

    /* One frame: a handle of another kind, release_after of a host frame,
     * use after release. */
    cuframes_frame_meta_t meta;
    EXPECT(cuframes_frame_meta_init(&meta), CUFRAMES_OK);
    meta.pts_ns = 40000000;
    meta.flags = CUFRAMES_FRAME_FLAG_KEY;
    EXPECT(cuframes_publisher_acquire(pub, &slot), CUFRAMES_OK);
    memset(slot.planes[0].data, 16, slot.planes[0].pitch * slot.planes[0].rows);
    memset(slot.planes[1].data, 128, slot.planes[1].pitch * slot.planes[1].rows);
    uint64_t seq = 0;
    EXPECT(cuframes_publisher_commit(pub, &meta, NULL, &seq), CUFRAMES_OK);
    CHECK(seq == 1);
    EXPECT(cuframes_subscriber_next(sub, NULL, &frame, 5000), CUFRAMES_OK);
    CHECK(cuframes_frame_seq(frame) == 1 && cuframes_frame_pts_ns(frame) == 40000000);
    CHECK(cuframes_frame_flags(frame) & CUFRAMES_FRAME_FLAG_KEY);
    CHECK(((const unsigned char *)cuframes_frame_plane_data(frame, 1))[0] == 128);
    CHECK(cuframes_frame_plane_device_ptr(frame, 0) == 0);
    size_t packed = 0;
    EXPECT(cuframes_frame_packed_size(frame, &packed), CUFRAMES_OK);
    CHECK(packed == 64 * 48 + 64 * 24);
    EXPECT(cuframes_frame_packed_size(NULL, &packed), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_next((cuframes_subscriber_t *)frame, NULL, &frame, 0),
           CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_packet_release((cuframes_packet_t *)frame), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_release_after(sub, frame, NULL), CUFRAMES_ERR_UNSUPPORTED);
    EXPECT(cuframes_frame_is_valid(frame), 1); /* still leased */
    EXPECT(cuframes_subscriber_release(sub, frame), CUFRAMES_OK);
    EXPECT(cuframes_subscriber_release(sub, frame), CUFRAMES_ERR_INVALID_HANDLE);
    CHECK(cuframes_frame_width(frame) == 0);
    EXPECT(cuframes_frame_is_valid(frame), CUFRAMES_ERR_INVALID_HANDLE);

    /* A frame outlives its subscriber. */
    EXPECT(cuframes_publisher_acquire(pub, &slot), CUFRAMES_OK);
    memset(slot.planes[0].data, 16, slot.planes[0].pitch * slot.planes[0].rows);
    EXPECT(cuframes_publisher_commit(pub, NULL, NULL, &seq), CUFRAMES_OK);
    CHECK(seq == 2);
    EXPECT(cuframes_subscriber_next(sub, NULL, &frame, 5000), CUFRAMES_OK);
    cuframes_subscriber_t *gone = sub;
    EXPECT(cuframes_subscriber_destroy(sub), CUFRAMES_OK);
    EXPECT(cuframes_subscriber_destroy(gone), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_subscriber_next(gone, NULL, &frame, 0), CUFRAMES_ERR_INVALID_HANDLE);
    CHECK(cuframes_frame_width(frame) == 64);
    CHECK(((const unsigned char *)cuframes_frame_plane_data(frame, 0))[0] == 16);
    EXPECT(cuframes_frame_release(frame), CUFRAMES_OK);

    /* End of stream: a new subscriber drains, then DISCONNECTED. */
    so = sub_opts(dir, "errs");
    so.mode = CUFRAMES_MODE_IN_ORDER;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_OK);
    EXPECT(cuframes_publisher_finish(pub), CUFRAMES_OK);
    EXPECT(cuframes_publisher_finish(pub), CUFRAMES_ERR_INVALID_HANDLE);
    EXPECT(cuframes_publisher_acquire(pub, &slot), CUFRAMES_ERR_INVALID_HANDLE);
    for (int i = 0; i < 10; i++) {
        rc = cuframes_subscriber_next(sub, NULL, &frame, 2000);
        if (rc != CUFRAMES_OK) break;
        cuframes_frame_release(frame);
    }
    EXPECT(rc, CUFRAMES_ERR_DISCONNECTED);
    EXPECT(cuframes_subscriber_end_reason(sub), CUFRAMES_END_OF_STREAM);
    EXPECT(cuframes_subscriber_destroy(sub), CUFRAMES_OK);

    /* Packet ring errors. */
    po = pub_opts(dir, "errs-pk");
    po.packets = 1;
    po.packet_codec_id = CUFRAMES_AV_CODEC_ID_H264;
    po.max_packet_size = 1024;
    po.packet_data_size = 4096;
    po.packet_slots = 4;
    EXPECT(cuframes_publisher_create(&po, &pub), CUFRAMES_OK);
    so = sub_opts(dir, "errs-pk");
    so.subscribe_flags = CUFRAMES_SUBSCRIBE_PACKETS;
    so.mode = CUFRAMES_MODE_IN_ORDER;
    EXPECT(cuframes_subscriber_create(&so, &sub), CUFRAMES_OK);
    const void *ex = (const void *)1;
    size_t ex_size = 7;
    EXPECT(cuframes_subscriber_get_codec_params(sub, &codec, &ex, &ex_size), CUFRAMES_ERR_NO_CODEC_PARAMS);
    CHECK(codec == CUFRAMES_AV_CODEC_ID_H264 && ex == NULL && ex_size == 0);
    static unsigned char big[2048];
    EXPECT(cuframes_publisher_publish_packet(pub, big, sizeof big, 0, 0, 0), CUFRAMES_ERR_PACKET_OVERSIZED);
    EXPECT(cuframes_publisher_publish_packet(pub, bytes, 0, 0, 0, 0), CUFRAMES_ERR_PACKET_OVERSIZED);
    EXPECT(cuframes_publisher_publish_packet(pub, NULL, 5, 0, 0, 0), CUFRAMES_ERR_INVALID_ARG);
    EXPECT(cuframes_publisher_set_codec_extradata(pub, big, 4097 > sizeof big ? sizeof big : 4097), CUFRAMES_OK);
    static unsigned char huge[5000];
    EXPECT(cuframes_publisher_set_codec_extradata(pub, huge, sizeof huge), CUFRAMES_ERR_INVALID_ARG);
    unsigned char sps[8] = {0, 0, 0, 1, 0x67, 1, 2, 3};
    EXPECT(cuframes_publisher_set_codec_extradata(pub, sps, sizeof sps), CUFRAMES_OK);
    EXPECT(cuframes_subscriber_get_codec_params(sub, &codec, &ex, &ex_size), CUFRAMES_OK);
    CHECK(ex_size == sizeof sps && memcmp(ex, sps, sizeof sps) == 0);
    EXPECT(cuframes_publisher_publish_packet(pub, bytes, sizeof bytes, 1000, 900, CUFRAMES_PKT_FLAG_KEY), CUFRAMES_OK);
    EXPECT(cuframes_subscriber_next_packet(sub, &pkt, 5000), CUFRAMES_OK);
    CHECK(cuframes_packet_size(pkt) == sizeof bytes && cuframes_packet_pts(pkt) == 1000 &&
          cuframes_packet_dts(pkt) == 900 && cuframes_packet_seq(pkt) == 0);
    CHECK(cuframes_packet_flags(pkt) == CUFRAMES_PKT_FLAG_KEY);
    EXPECT(cuframes_subscriber_next_packet(sub, &pkt, 0), CUFRAMES_ERR_WOULD_BLOCK);
    EXPECT(cuframes_subscriber_next_packet(sub, &pkt, 30), CUFRAMES_ERR_TIMEOUT);
    EXPECT(cuframes_subscriber_next(sub, NULL, &frame, 0), CUFRAMES_ERR_NOT_SUBSCRIBED);
    EXPECT(cuframes_subscriber_release_packet(sub, pkt), CUFRAMES_OK);
    EXPECT(cuframes_publisher_destroy(pub), CUFRAMES_OK);
    EXPECT(cuframes_subscriber_next_packet(sub, &pkt, 2000), CUFRAMES_ERR_DISCONNECTED);
    EXPECT(cuframes_subscriber_end_reason(sub), CUFRAMES_END_SHUTDOWN);
    EXPECT(cuframes_subscriber_destroy(sub), CUFRAMES_OK);

    if (failures) {
        fprintf(stderr, "errors.c: %d failures\n", failures);
        return 1;
    }
    fprintf(stderr, "errors.c: all error paths as documented\n");
    return 0;
}
