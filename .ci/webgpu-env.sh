# Sourced before running the suite with FRUGAL_DEVICE=webgpu on a machine without a GPU: Dawn then
# runs on SwiftShader's CPU Vulkan driver (Debian: apt-get install -y chromium libvulkan1).
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; then
  export VK_DRIVER_FILES=/usr/lib/chromium/vk_swiftshader_icd.json
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
