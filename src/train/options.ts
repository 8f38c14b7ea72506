// The training recipe's options: one definition for the CLI, the trainers and the page.
// Pure TypeScript: runs in browsers too.

import type { Dataset } from '../data/types.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import { paddingForCrop, type InferenceSettings } from '../nn/inference.js';
import { IMAGENET } from '../data/augment.js';

/** The inference settings of a model being trained on `ds` with crops of `crop` pixels (the
 * loaders normalise with ImageNet's mean/std): what its checkpoints record. */
export function trainedInference(model: DeepLabV3, ds: Dataset, crop: number): InferenceSettings {
  return {
    outputStride: model.outputStride,
    normalization: { mean: [...IMAGENET.mean], std: [...IMAGENET.std] },
    classes: [...ds.classNames],
    padding: paddingForCrop(crop, model.outputStride),
  };
}

