/* C publisher test: reads packed NV12 frames (FFmpeg rawvideo) from stdin
 * and publishes each with acquire / commit under the Wait policy (lossless
 * for InOrder subscribers), after the first subscriber connected; then ends
 * the stream (GOODBYE end of stream). A Rust subscriber
 * (`cuframes-subscribe --framemd5`) checks the frames byte for byte.
 *
 * usage: ffmpeg ... -f rawvideo -pix_fmt nv12 - | publish KEY RUNTIME_DIR WIDTH HEIGHT */
#include <cuframes/cuframes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "publish.c:%d: check failed: %s (last error: %s)\n", __LINE__,   \
                    #cond, cuframes_last_error());                                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: publish KEY RUNTIME_DIR WIDTH HEIGHT < frames.nv12\n");
        return 2;
    }
    cuframes_publisher_options_t opts;
    CHECK(cuframes_publisher_options_init(&opts) == CUFRAMES_OK);
    opts.key = argv[1];
    opts.runtime_dir = argv[2];
    opts.width = (uint32_t)atoi(argv[3]);
    opts.height = (uint32_t)atoi(argv[4]);
    opts.pixel_format = CUFRAMES_FORMAT_NV12;
    opts.codec = CUFRAMES_CODEC_H264;
    opts.fps_num = 25;
    opts.fps_den = 1;
    opts.backend = CUFRAMES_BACKEND_HOST;
    opts.policy = CUFRAMES_POLICY_WAIT;
    opts.wait_timeout_ms = 10000;
    cuframes_publisher_t *pub = NULL;
    int rc = cuframes_publisher_create(&opts, &pub);
    if (rc != CUFRAMES_OK) {
        fprintf(stderr, "create: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
        return 1;
    }
    CHECK(cuframes_publisher_wait_for_subscribers(pub, 1, 30000) == CUFRAMES_OK);

    /* One packed frame: Y rows then CbCr rows, no padding. */
    size_t y_size = (size_t)opts.width * opts.height;
    size_t uv_size = (size_t)2 * ((opts.width + 1) / 2) * ((opts.height + 1) / 2);
    unsigned char *frame = malloc(y_size + uv_size);
    CHECK(frame != NULL);
    unsigned n = 0;
    while (fread(frame, 1, y_size + uv_size, stdin) == y_size + uv_size) {
        cuframes_slot_t slot;
        slot.struct_size = sizeof slot;
        rc = cuframes_publisher_acquire(pub, &slot);
        CHECK(rc == CUFRAMES_OK); /* Wait policy: no drops while the reader keeps up */
        CHECK(slot.memory == CUFRAMES_MEMORY_HOST && slot.plane_count == 2);
        CHECK(slot.width == opts.width && slot.height == opts.height);
        const unsigned char *src = frame;
        for (uint32_t p = 0; p < slot.plane_count; p++) {
            cuframes_slot_plane_t *pl = &slot.planes[p];
            CHECK(pl->data != NULL && pl->pitch >= pl->row_bytes);
            for (size_t r = 0; r < pl->rows; r++) {
                memcpy((unsigned char *)pl->data + r * pl->pitch, src, pl->row_bytes);
                src += pl->row_bytes;
            }
        }
        CHECK(src == frame + y_size + uv_size);
        cuframes_frame_meta_t meta;
        CHECK(cuframes_frame_meta_init(&meta) == CUFRAMES_OK);
        meta.pts_ns = (int64_t)n * 40000000;
        meta.flags = n % 25 == 0 ? CUFRAMES_FRAME_FLAG_KEY : 0;
        uint64_t seq = 0;
        CHECK(cuframes_publisher_commit(pub, &meta, NULL, &seq) == CUFRAMES_OK);
        CHECK(seq == n + 1);
        n++;
    }
    free(frame);
    CHECK(cuframes_publisher_finish(pub) == CUFRAMES_OK);
    fprintf(stderr, "publish.c: published %u frames\n", n);
    return n > 0 ? 0 : 1;
}
