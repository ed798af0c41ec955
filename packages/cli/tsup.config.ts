import { packageConfig } from '../../tsup.base';

// The library (index) and the `posttrain` executable (bin, which keeps its #! line); shims give the
// CommonJS build an `import.meta.url`, which finds the tiny base in assets/.
export default packageConfig({ entry: ['src/index.ts', 'src/bin.ts'], shims: true });
