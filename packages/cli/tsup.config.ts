import { packageConfig } from '../../tsup.base';

// The library (index) and the `posttrain` executable (bin, which keeps its #! line).
export default packageConfig({ entry: ['src/index.ts', 'src/bin.ts'] });
