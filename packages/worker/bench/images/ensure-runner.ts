// One pull + unpack in its own process, so /usr/bin/time measures its wall time and peak RSS alone.
import { ensureImage } from "../../src/images/index.js";

const [image, home, insecure] = process.argv.slice(2);
const result = await ensureImage(image!, { home: home!, insecureRegistries: insecure ? [insecure] : [] });
process.stderr.write(`ensured ${result.digest} (${(result.sizeBytes / 1e6).toFixed(0)} MB)\n`);
