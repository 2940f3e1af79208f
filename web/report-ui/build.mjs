// Builds ../../internal/htmlreport/assets/echarts.min.js from the pinned
// packages (npm ci first), with the licences of everything bundled beside it.
// The output depends only on package-lock.json and this file, so CI can
// rebuild it and compare (make ui-verify).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const out = new URL('../../internal/htmlreport/assets/', import.meta.url);
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ['entry.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2019',
  legalComments: 'none', // the licences are kept as files beside the bundle
  define: { 'process.env.NODE_ENV': '"production"', __DEV__: 'false' },
  outfile: new URL('echarts.min.js', out).pathname,
  logLevel: 'warning',
});

// Apache-2.0 asks for its LICENSE and NOTICE; zrender is BSD-3-Clause and
// tslib 0BSD. One file names every bundled package, its version and licence.
const packages = ['echarts', 'zrender', 'tslib'];
let licences = 'Licences of the packages bundled into echarts.min.js (built by web/report-ui).\n';
for (const name of packages) {
  const dir = `node_modules/${name}/`;
  const meta = JSON.parse(readFileSync(dir + 'package.json', 'utf8'));
  const licenceFile = name === 'tslib' ? 'LICENSE.txt' : 'LICENSE';
  licences += `\n==== ${name} ${meta.version} (${meta.license}) ====\n\n` + readFileSync(dir + licenceFile, 'utf8');
}
writeFileSync(new URL('echarts.LICENSE', out), licences);
copyFileSync('node_modules/echarts/NOTICE', new URL('echarts.NOTICE', out));
