// Every op of the library, one module per op family.
export { add, axpy_, reshape, full, zeros, ones, clone } from './elementwise.js';
export { OpError } from './check.js';
export { batchNorm, type BatchNormOptions } from './batchnorm.js';
export { adaptiveAvgPool2d } from './gap.js';
export { conv2d, type Conv2dOptions } from './conv2d/index.js';
export { interpolate, type InterpolateOptions } from './resize.js';
export { maxPool2d, type MaxPool2dOptions } from './maxpool.js';
export { cat } from './concat.js';
export { matmul } from './matmul.js';
export { relu, dropout, type DropoutOptions } from './activation.js';
export { crossEntropy, type CrossEntropyOptions } from './loss.js';
export { argmax } from './argmax.js';
export { setKernelVariant, kernelVariants, type VariantChoice } from './variants.js';
