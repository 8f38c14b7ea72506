// Every op of the library, one module per op family.
export { add, sub, axpy_, reshape, full, zeros, ones, clone } from './elementwise.js';
export { OpError } from './check.js';
