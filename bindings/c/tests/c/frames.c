/* C frame subscriber test: receives every frame of a stream (InOrder),
 * hashes each frame's rows without pitch padding (FFmpeg's packed
 * NV12/P010 layout) and writes "source_index size md5" per frame to OUT.
 * Checks on the way that the per-plane accessors, the info struct and the
 * earlier API's accessors agree. Exit 0 on a clean end of stream.
 *
 * BACKEND (default host): host or auto. MEMORY (default host): the memory
 * the frames must be in, host or vulkan. Host frames are hashed from their
 * plane pointers (and checked against cuframes_frame_copy_to_host); Vulkan
 * frames, which have no plane pointers, from cuframes_frame_copy_to_host.
 *
 * usage: frames KEY RUNTIME_DIR OUT [BACKEND MEMORY] */
#include <cuframes/cuframes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "md5.h"

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "frames.c:%d: check failed: %s (last error: %s)\n", __LINE__,    \
                    #cond, cuframes_last_error());                                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: frames KEY RUNTIME_DIR OUT [host|auto host|vulkan]\n");
        return 2;
    }
    int backend = CUFRAMES_BACKEND_HOST;
    int memory = CUFRAMES_MEMORY_HOST;
    if (argc == 6) {
        if (strcmp(argv[4], "auto") == 0)
            backend = CUFRAMES_BACKEND_AUTO;
        else
            CHECK(strcmp(argv[4], "host") == 0);
        if (strcmp(argv[5], "vulkan") == 0)
            memory = CUFRAMES_MEMORY_VULKAN;
        else
            CHECK(strcmp(argv[5], "host") == 0);
    }
    unsigned char *packed = NULL;
    size_t packed_cap = 0;
    FILE *out = fopen(argv[3], "w");
    CHECK(out != NULL);

    cuframes_subscriber_options_t opts;
    CHECK(cuframes_subscriber_options_init(&opts) == CUFRAMES_OK);
    opts.key = argv[1];
    opts.runtime_dir = argv[2];
    opts.consumer_name = "frames.c";
    opts.mode = CUFRAMES_MODE_IN_ORDER;
    opts.backend = backend;
    opts.wait_publisher_ms = 10000;

    cuframes_subscriber_t *sub = NULL;
    int rc = cuframes_subscriber_create(&opts, &sub);
    if (rc != CUFRAMES_OK) {
        fprintf(stderr, "create: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
        return 1;
    }
    cuframes_stream_info_t stream;
    stream.struct_size = sizeof stream;
    CHECK(cuframes_subscriber_get_stream(sub, &stream) == CUFRAMES_OK);
    CHECK(stream.memory == memory);
    CHECK(stream.plane_count == 2);
    fprintf(stderr, "frames.c: %ux%u format %u\n", stream.width, stream.height,
            stream.pixel_format);

    unsigned frames = 0;
    uint64_t last_seq = 0;
    for (;;) {
        cuframes_frame_t *f = NULL;
        rc = cuframes_subscriber_next(sub, NULL, &f, 5000);
        if (rc == CUFRAMES_ERR_DISCONNECTED) break;
        if (rc != CUFRAMES_OK) {
            fprintf(stderr, "next: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
            return 1;
        }
        cuframes_frame_info_t info;
        info.struct_size = sizeof info;
        CHECK(cuframes_frame_get_info(f, &info) == CUFRAMES_OK);
        CHECK(info.memory == memory);
        CHECK(info.seq > last_seq);
        last_seq = info.seq;
        CHECK(info.width == cuframes_frame_width(f) && info.height == cuframes_frame_height(f));
        CHECK(info.pixel_format == cuframes_frame_pixel_format(f));
        CHECK(info.seq == cuframes_frame_seq(f) && info.pts_ns == cuframes_frame_pts_ns(f));
        CHECK(info.flags == cuframes_frame_flags(f));
        int32_t w = 0, h = 0;
        cuframes_frame_size(f, &w, &h);
        CHECK((uint32_t)w == info.width && (uint32_t)h == info.height);
        CHECK((size_t)cuframes_frame_pitch_y(f) == info.planes[0].pitch);
        CHECK((size_t)cuframes_frame_pitch_uv(f) == info.planes[1].pitch);
        CHECK(cuframes_frame_cuda_ptr(f) == NULL); /* a host or Vulkan frame */
        CHECK(cuframes_frame_is_valid(f) == 1);

        md5_ctx md5;
        md5_init(&md5);
        size_t size = 0;
        CHECK(info.plane_count == cuframes_frame_plane_count(f));
        for (uint32_t p = 0; p < info.plane_count; p++) {
            const unsigned char *data = (const unsigned char *)cuframes_frame_plane_data(f, p);
            size_t pitch = cuframes_frame_plane_pitch(f, p);
            size_t row = cuframes_frame_plane_row_bytes(f, p);
            size_t rows = cuframes_frame_plane_rows(f, p);
            CHECK(data == info.planes[p].data);
            CHECK((data != NULL) == (memory == CUFRAMES_MEMORY_HOST));
            CHECK(info.planes[p].device_ptr == 0);
            CHECK(pitch == info.planes[p].pitch && row == info.planes[p].row_bytes &&
                  rows == info.planes[p].rows);
            CHECK(pitch >= row && row > 0 && rows > 0);
            if (data != NULL)
                for (size_t r = 0; r < rows; r++) md5_update(&md5, data + r * pitch, row);
            size += row * rows;
        }
        /* The packed copy: its size is the planes' rows; for host frames it
         * equals the rows read through the pointers, Vulkan frames are
         * hashed from it. */
        size_t need = 0, written = 0;
        CHECK(cuframes_frame_packed_size(f, &need) == CUFRAMES_OK && need == size);
        CHECK(cuframes_frame_packed_size(f, NULL) == CUFRAMES_ERR_INVALID_ARG);
        if (need > packed_cap) {
            packed = realloc(packed, need);
            CHECK(packed != NULL);
            packed_cap = need;
        }
        CHECK(cuframes_frame_copy_to_host(f, packed, need - 1, &written) ==
              CUFRAMES_ERR_INVALID_ARG);
        CHECK(cuframes_frame_copy_to_host(f, packed, need, &written) == CUFRAMES_OK);
        CHECK(written == need);
        if (memory == CUFRAMES_MEMORY_HOST) {
            size_t at = 0;
            for (uint32_t p = 0; p < info.plane_count; p++) {
                const unsigned char *data = info.planes[p].data;
                for (size_t r = 0; r < info.planes[p].rows; r++) {
                    CHECK(memcmp(packed + at, data + r * info.planes[p].pitch,
                                 info.planes[p].row_bytes) == 0);
                    at += info.planes[p].row_bytes;
                }
            }
        } else {
            md5_update(&md5, packed, written);
        }
        /* A plane the format lacks. */
        CHECK(cuframes_frame_plane_data(f, info.plane_count) == NULL);
        char hex[33];
        md5_final_hex(&md5, hex);
        rc = cuframes_subscriber_release(sub, f);
        CHECK(rc == CUFRAMES_OK); /* not revoked: the hash is of a stable frame */
        fprintf(out, "%llu %zu %s\n", (unsigned long long)info.source_index, size, hex);
        frames++;
    }
    CHECK(cuframes_subscriber_end_reason(sub) == CUFRAMES_END_OF_STREAM);
    cuframes_subscriber_stats_t st;
    st.struct_size = sizeof st;
    CHECK(cuframes_subscriber_get_stats(sub, &st) == CUFRAMES_OK);
    CHECK(st.received == frames);
    CHECK(cuframes_subscriber_destroy(sub) == CUFRAMES_OK);
    free(packed);
    fclose(out);
    fprintf(stderr, "frames.c: %u frames, %llu dropped\n", frames, (unsigned long long)st.dropped);
    return 0;
}
