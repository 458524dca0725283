/* GPU test (scripts/gpu-tests.sh, section capi): a C consumer of CUDA
 * frames. Subscribes (InOrder, CUDA backend) to a publisher sharing VRAM
 * (VMM fds or legacy IPC), copies each frame's planes device to host with
 * the CUDA driver API (cuMemcpy2D, in the primary context of the frame's
 * device), hashes the packed rows and writes "source_index size md5" per
 * frame, as the CPU tests do, for comparison with the media/ framemd5 references.
 * Releases each frame synchronously (cuframes_subscriber_release).
 *
 * usage: cuda_frames KEY OUT [legacy]   (runtime dir: $CUFRAMES_RUNTIME_DIR)
 * build: cc -std=c11 cuda_frames.c -I../c $(pkg-config --cflags --libs cuframes)
 *        -I/usr/local/cuda/include -L/usr/local/cuda/lib64/stubs -lcuda */
#include <cuda.h>
#include <cuframes/cuframes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "md5.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "cuda_frames.c:%d: check failed: %s (last error: %s)\n", __LINE__, \
                    #cond, cuframes_last_error());                                            \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define CU(call)                                                                              \
    do {                                                                                      \
        CUresult r_ = (call);                                                                 \
        if (r_ != CUDA_SUCCESS) {                                                             \
            const char *s_ = "?";                                                             \
            cuGetErrorName(r_, &s_);                                                          \
            fprintf(stderr, "cuda_frames.c:%d: %s: %s\n", __LINE__, #call, s_);               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cuda_frames KEY OUT [legacy]\n");
        return 2;
    }
    FILE *out = fopen(argv[2], "w");
    CHECK(out != NULL);
    CU(cuInit(0));

    cuframes_subscriber_options_t opts;
    CHECK(cuframes_subscriber_options_init(&opts) == CUFRAMES_OK);
    opts.key = argv[1];
    opts.consumer_name = "cuda_frames.c";
    opts.mode = CUFRAMES_MODE_IN_ORDER;
    opts.backend = CUFRAMES_BACKEND_CUDA;
    opts.wait_publisher_ms = 20000;
    /* This script's own publisher: trusting its legacy IPC handles is safe. */
    opts.allow_legacy_ipc = argc > 3 && strcmp(argv[3], "legacy") == 0;
    cuframes_subscriber_t *sub = NULL;
    int rc = cuframes_subscriber_create(&opts, &sub);
    if (rc != CUFRAMES_OK) {
        fprintf(stderr, "create: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
        return 1;
    }
    cuframes_stream_info_t si;
    si.struct_size = sizeof si;
    CHECK(cuframes_subscriber_get_stream(sub, &si) == CUFRAMES_OK);
    CHECK(si.memory == CUFRAMES_MEMORY_CUDA);

    unsigned char *host = NULL;
    size_t host_size = 0;
    CUcontext ctx = NULL;
    unsigned n = 0;
    for (;;) {
        cuframes_frame_t *f = NULL;
        rc = cuframes_subscriber_next(sub, NULL, &f, 10000); /* NULL: complete on return */
        if (rc == CUFRAMES_ERR_DISCONNECTED) break;
        if (rc != CUFRAMES_OK) {
            fprintf(stderr, "next: %s: %s\n", cuframes_strerror(rc), cuframes_last_error());
            return 1;
        }
        cuframes_frame_info_t info;
        info.struct_size = sizeof info;
        CHECK(cuframes_frame_get_info(f, &info) == CUFRAMES_OK);
        CHECK(info.memory == CUFRAMES_MEMORY_CUDA);
        CHECK(cuframes_frame_plane_data(f, 0) == NULL); /* no host pointer */
        CHECK((uint64_t)(uintptr_t)cuframes_frame_cuda_ptr(f) == info.planes[0].device_ptr);
        if (ctx == NULL) {
            /* The frame lives on the publisher's GPU: its primary context. */
            int ordinal = -1;
            /* (Device 0 if the driver cannot tell: a one-GPU machine.) */
            if (cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                      (CUdeviceptr)info.planes[0].device_ptr) != CUDA_SUCCESS)
                ordinal = 0;
            CUdevice dev;
            CU(cuDeviceGet(&dev, ordinal));
            CU(cuDevicePrimaryCtxRetain(&ctx, dev));
            CU(cuCtxSetCurrent(ctx));
            fprintf(stderr, "cuda_frames.c: frames on device %d\n", ordinal);
        }
        size_t size = 0;
        for (uint32_t p = 0; p < info.plane_count; p++) size += info.planes[p].row_bytes * info.planes[p].rows;
        if (size > host_size) {
            free(host);
            host = malloc(size);
            CHECK(host != NULL);
            host_size = size;
        }
        size_t at = 0;
        for (uint32_t p = 0; p < info.plane_count; p++) {
            const cuframes_plane_t *pl = &info.planes[p];
            CHECK(pl->device_ptr == cuframes_frame_plane_device_ptr(f, p));
            CUDA_MEMCPY2D m;
            memset(&m, 0, sizeof m);
            m.srcMemoryType = CU_MEMORYTYPE_DEVICE;
            m.srcDevice = (CUdeviceptr)pl->device_ptr;
            m.srcPitch = pl->pitch;
            m.dstMemoryType = CU_MEMORYTYPE_HOST;
            m.dstHost = host + at;
            m.dstPitch = pl->row_bytes;
            m.WidthInBytes = pl->row_bytes;
            m.Height = pl->rows;
            CU(cuMemcpy2D(&m));
            at += pl->row_bytes * pl->rows;
        }
        CHECK(cuframes_subscriber_release(sub, f) == CUFRAMES_OK); /* not revoked */
        md5_ctx md5;
        char hex[33];
        md5_init(&md5);
        md5_update(&md5, host, size);
        md5_final_hex(&md5, hex);
        fprintf(out, "%llu %zu %s\n", (unsigned long long)info.source_index, size, hex);
        n++;
    }
    CHECK(cuframes_subscriber_end_reason(sub) == CUFRAMES_END_OF_STREAM);
    CHECK(cuframes_subscriber_destroy(sub) == CUFRAMES_OK);
    fclose(out);
    free(host);
    fprintf(stderr, "cuda_frames.c: %u frames\n", n);
    return 0;
}
