// Fails when the minified bundle (not gzipped) is larger than the published limit.
import { statSync } from 'node:fs';

const LIMIT = 5 * 1024;
const file = new URL('../dist/index.js', import.meta.url);
const size = statSync(file).size;
console.log(`dist/index.js: ${size} bytes minified (limit ${LIMIT})`);
if (size > LIMIT) {
  console.error(`dist/index.js is ${size - LIMIT} bytes over the ${LIMIT}-byte limit`);
  process.exit(1);
}
