/* C packet recorder test: receives every encoded packet of a stream
 * (CUFRAMES_SUBSCRIBE_PACKETS only), writes "seq size flags md5" per packet
 * to OUT_LIST and the elementary stream (codec extradata, then every
 * packet: Annex B) to OUT_ES, so that the script can compare the packets
 * with FFmpeg's `-c copy -f framemd5` of the source and decode OUT_ES.
 * Exit 0 on a clean end of stream.
 *
 * usage: packets KEY RUNTIME_DIR OUT_LIST OUT_ES */
#include <cuframes/cuframes.h>
#include <stdio.h>
#include <stdlib.h>

#include "md5.h"

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "packets.c:%d: check failed: %s (last error: %s)\n", __LINE__,   \
                    #cond, cuframes_last_error());                                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: packets KEY RUNTIME_DIR OUT_LIST OUT_ES\n");
        return 2;
    }
    FILE *list = fopen(argv[3], "w");
    FILE *es = fopen(argv[4], "wb");
    CHECK(list != NULL && es != NULL);

    cuframes_subscriber_options_t opts;
    CHECK(cuframes_subscriber_options_init(&opts) == CUFRAMES_OK);
    opts.key = argv[1];
    opts.runtime_dir = argv[2];
    opts.consumer_name = "packets.c";
    opts.mode = CUFRAMES_MODE_IN_ORDER;
    opts.subscribe_flags = CUFRAMES_SUBSCRIBE_PACKETS;
    opts.wait_publisher_ms = 10000;
    cuframes_subscriber_t *sub = NULL;
    int rc = cuframes_subscriber_create(&opts, &sub);
    if (rc != CUFRAMES_OK) {
        fprintf(stderr, "create: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
        return 1;
    }
    /* A packets-only subscriber has no frames. */
    cuframes_frame_t *f = NULL;
    CHECK(cuframes_subscriber_next(sub, NULL, &f, 0) == CUFRAMES_ERR_NOT_SUBSCRIBED);

    unsigned n = 0;
    int have_extradata = 0;
    for (;;) {
        cuframes_packet_t *p = NULL;
        rc = cuframes_subscriber_next_packet(sub, &p, 5000);
        if (rc == CUFRAMES_ERR_DISCONNECTED) break;
        if (rc != CUFRAMES_OK) {
            fprintf(stderr, "next_packet: %s: %s\n", cuframes_strerror(rc),
                    cuframes_last_error());
            return 1;
        }
        if (!have_extradata) {
            /* The publisher stores the extradata before its first packet. */
            uint32_t codec = 0;
            const void *extradata = NULL;
            size_t extradata_size = 0;
            rc = cuframes_subscriber_get_codec_params(sub, &codec, &extradata, &extradata_size);
            CHECK(rc == CUFRAMES_OK);
            CHECK(codec == CUFRAMES_AV_CODEC_ID_H264 || codec == CUFRAMES_AV_CODEC_ID_HEVC);
            CHECK(extradata != NULL && extradata_size > 0);
            CHECK(fwrite(extradata, 1, extradata_size, es) == extradata_size);
            fprintf(stderr, "packets.c: codec %u, %zu bytes of extradata\n", codec,
                    extradata_size);
            have_extradata = 1;
        }
        const void *data = cuframes_packet_data(p);
        size_t size = cuframes_packet_size(p);
        uint32_t flags = cuframes_packet_flags(p);
        CHECK(data != NULL && size > 0);
        CHECK(cuframes_packet_seq(p) == n); /* from the first packet, none lost */
        CHECK(cuframes_packet_skipped(p) == 0);
        CHECK((flags & CUFRAMES_PKT_FLAG_DISCONTINUITY) == 0);
        CHECK(n != 0 || (flags & CUFRAMES_PKT_FLAG_KEY)); /* starts on a keyframe */
        md5_ctx md5;
        char hex[33];
        md5_init(&md5);
        md5_update(&md5, data, size);
        md5_final_hex(&md5, hex);
        fprintf(list, "%llu %zu %u %s\n", (unsigned long long)cuframes_packet_seq(p), size,
                flags, hex);
        CHECK(fwrite(data, 1, size, es) == size);
        CHECK(cuframes_subscriber_release_packet(sub, p) == CUFRAMES_OK);
        /* Released: the handle is gone. */
        CHECK(cuframes_packet_size(p) == 0);
        CHECK(cuframes_packet_release(p) == CUFRAMES_ERR_INVALID_HANDLE);
        n++;
    }
    CHECK(cuframes_subscriber_end_reason(sub) == CUFRAMES_END_OF_STREAM);
    CHECK(cuframes_subscriber_destroy(sub) == CUFRAMES_OK);
    fclose(list);
    fclose(es);
    fprintf(stderr, "packets.c: %u packets\n", n);
    return 0;
}
