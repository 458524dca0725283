// NV12 -> RGBA8 (BT.601, limited range) for the nv12_to_png example.
// The frame is the shared slot buffer, read as 32-bit words; planes at the
// byte offsets and pitches of the stream description (push constants).
// Compiled to nv12_to_rgba.spv (committed) with:
//   glslangValidator -V --target-env vulkan1.1 -o nv12_to_rgba.spv nv12_to_rgba.comp
// (.ci/vulkan recompiles it and fails if the committed blob differs.)
#version 450

layout(local_size_x = 16, local_size_y = 16) in;

layout(std430, set = 0, binding = 0) readonly buffer Frame { uint data[]; } frame;
layout(std430, set = 0, binding = 1) writeonly buffer Rgba { uint px[]; } rgba;

layout(push_constant) uniform Params {
    uint width;
    uint height;
    uint y_offset;
    uint y_pitch;
    uint uv_offset;
    uint uv_pitch;
} p;

uint byte_at(uint off) {
    return (frame.data[off >> 2] >> ((off & 3u) * 8u)) & 0xffu;
}

void main() {
    uvec2 xy = gl_GlobalInvocationID.xy;
    if (xy.x >= p.width || xy.y >= p.height) {
        return;
    }
    float y = float(byte_at(p.y_offset + xy.y * p.y_pitch + xy.x));
    uint c = p.uv_offset + (xy.y / 2u) * p.uv_pitch + (xy.x / 2u) * 2u;
    float u = float(byte_at(c)) - 128.0;
    float v = float(byte_at(c + 1u)) - 128.0;
    float l = 1.164383 * (y - 16.0);
    vec3 rgb = vec3(l + 1.596027 * v, l - 0.391762 * u - 0.812968 * v, l + 2.017232 * u);
    uvec3 o = uvec3(clamp(rgb + 0.5, 0.0, 255.0));
    rgba.px[xy.y * p.width + xy.x] = o.r | (o.g << 8) | (o.b << 16) | (255u << 24);
}
