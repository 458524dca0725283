// GPU test (scripts/gpu-tests.sh, section capi): a C++ consumer of CUDA
// frames through cuframes.hpp that never blocks on a release. Each frame:
// cuframes::Subscriber::next(stream) (under IPC events the stream waits for
// the publisher's copy), cuMemcpy2DAsync of each plane into pinned host
// memory on its own CUstream, Frame::release_after(stream) (the lease
// returns once the copies finished), then a stream sync and the MD5 of the
// packed rows. Writes "source_index size md5" per frame.
//
// usage: cuda_release_after KEY OUT [legacy]   (runtime dir: $CUFRAMES_RUNTIME_DIR)
#include <cuda.h>
#include <cuframes/cuframes.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

extern "C" {
#include "md5.h"
}

#define CU(call)                                                                            \
    do {                                                                                    \
        CUresult r_ = (call);                                                               \
        if (r_ != CUDA_SUCCESS) {                                                           \
            const char *s_ = "?";                                                           \
            cuGetErrorName(r_, &s_);                                                        \
            std::cerr << "cuda_release_after.cpp:" << __LINE__ << ": " #call ": " << s_ << "\n"; \
            std::exit(1);                                                                   \
        }                                                                                   \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 3) {
        std::cerr << "usage: cuda_release_after KEY OUT [legacy]\n";
        return 2;
    }
    std::ofstream out(argv[2]);
    CU(cuInit(0));
    cuframes::SubscriberOptions o;
    o.key = argv[1];
    o.consumer_name = "cuda_release_after.cpp";
    o.mode = CUFRAMES_MODE_IN_ORDER;
    o.backend = CUFRAMES_BACKEND_CUDA;
    o.wait_publisher_ms = 20000;
    o.allow_legacy_ipc = argc > 3 && std::strcmp(argv[3], "legacy") == 0;
    cuframes::Subscriber sub(o);

    CUcontext ctx = nullptr;
    CUstream stream = nullptr;
    unsigned char *pinned = nullptr;
    size_t pinned_size = 0;
    unsigned n = 0;
    for (;;) {
        std::optional<cuframes::Frame> f;
        try {
            // The first frame, before the stream exists, is waited for on
            // the host (stream nullptr); the others on the stream.
            f = sub.next(stream, 10000);
        } catch (const cuframes::Error &e) {
            if (e.code() == CUFRAMES_ERR_DISCONNECTED) break;
            throw;
        }
        if (!f) {
            std::cerr << "no frame for 10 s\n";
            return 1;
        }
        cuframes_frame_info_t info = f->info();
        if (!ctx) {
            int ordinal = -1;
            // (Device 0 if the driver cannot tell: a one-GPU machine.)
            if (cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                      static_cast<CUdeviceptr>(info.planes[0].device_ptr)) != CUDA_SUCCESS)
                ordinal = 0;
            CUdevice dev;
            CU(cuDeviceGet(&dev, ordinal));
            CU(cuDevicePrimaryCtxRetain(&ctx, dev));
            CU(cuCtxSetCurrent(ctx));
            CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
        }
        size_t size = 0;
        for (uint32_t p = 0; p < info.plane_count; p++) size += info.planes[p].row_bytes * info.planes[p].rows;
        if (size > pinned_size) {
            if (pinned) CU(cuMemFreeHost(pinned));
            CU(cuMemAllocHost(reinterpret_cast<void **>(&pinned), size));
            pinned_size = size;
        }
        size_t at = 0;
        for (uint32_t p = 0; p < info.plane_count; p++) {
            const cuframes_plane_t &pl = info.planes[p];
            CUDA_MEMCPY2D m;
            std::memset(&m, 0, sizeof m);
            m.srcMemoryType = CU_MEMORYTYPE_DEVICE;
            m.srcDevice = static_cast<CUdeviceptr>(pl.device_ptr);
            m.srcPitch = pl.pitch;
            m.dstMemoryType = CU_MEMORYTYPE_HOST;
            m.dstHost = pinned + at;
            m.dstPitch = pl.row_bytes;
            m.WidthInBytes = pl.row_bytes;
            m.Height = pl.rows;
            CU(cuMemcpy2DAsync(&m, stream));
            at += pl.row_bytes * pl.rows;
        }
        uint64_t index = f->source_index();
        f->release_after(stream); // returns at once; the lease follows the copies
        CU(cuStreamSynchronize(stream));
        md5_ctx md5;
        char hex[33];
        md5_init(&md5);
        md5_update(&md5, pinned, size);
        md5_final_hex(&md5, hex);
        out << index << " " << size << " " << hex << "\n";
        n++;
    }
    if (sub.end_reason() != CUFRAMES_END_OF_STREAM) {
        std::cerr << "the stream did not end cleanly\n";
        return 1;
    }
    auto st = sub.stats();
    std::cerr << "cuda_release_after.cpp: " << n << " frames, " << st.revoked << " revoked\n";
    return st.revoked == 0 ? 0 : 1;
}
