# Sourced by gpu-tests.sh and gpu-bench.sh (needs $RT, a scratch directory).
# Headless NVIDIA containers: the driver's nvidia_icd.json names
# libGLX_nvidia.so.0, whose GL core needs an X server's symbols and fails to
# load there (vkCreateInstance: ERROR_INCOMPATIBLE_DRIVER); libEGL_nvidia.so.0
# carries the same Vulkan ICD without X. Use it unless told otherwise
# (VK_ICD_FILENAMES set, or a DISPLAY); docs/vulkan.md.
if [ -z "${VK_ICD_FILENAMES:-}${DISPLAY:-}" ] && ldconfig -p | grep -q 'libEGL_nvidia.so.0 '; then
  printf '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.3.0"}}\n' \
    > "$RT/nvidia_egl_icd.json"
  export VK_ICD_FILENAMES=$RT/nvidia_egl_icd.json
  VK_LOADER_NOTE="${VK_LOADER_NOTE:-the system loader}; ICD libEGL_nvidia.so.0 (headless, VK_ICD_FILENAMES)"
fi
