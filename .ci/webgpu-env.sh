# Sourced before running WebGPU code by hand on a machine without a GPU: points Dawn at a CPU Vulkan
# (SwiftShader: the system one, or the one unpacked from the npm package @sparticuz/chromium).
eval "$(node --input-type=module -e "
import { webgpuEnv } from './bin/test-env.js';
const { env } = webgpuEnv();
for (const k of ['VK_DRIVER_FILES', 'LD_LIBRARY_PATH', 'XDG_RUNTIME_DIR']) if (env[k]) console.log('export ' + k + '=' + JSON.stringify(env[k]));
")"
