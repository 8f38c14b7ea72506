// Networks: the Module base, layers, ResNet backbones, ASPP and DeepLabv3 with its named configurations.
export { Module, Layer, gpuOps, ShapeTracer, keyMatcher, type Ops, type Shaped, type Shape, type HostTensor, type LoadOptions, type LoadReport, type ConvArgs } from './module.js';
export { Conv2d, BatchNorm2d, ReLU, Dropout, MaxPool2d, AdaptiveAvgPool2d, Sequential, ModuleList, chain, type Conv2dConfig, type BatchNormConfig } from './layers.js';
export { ResNet, Bottleneck, planStages, baseWidth, type ResNetConfig, type StagePlan } from './resnet.js';
export { ASPP, ASPPConv, ASPPPooling, FCNHead, type ASPPOptions } from './aspp.js';
export { DeepLabV3, createDeepLabV3, type TraceResult } from './deeplabv3.js';
export { CONFIGS, CONFIG_NAMES, modelConfig, validateConfig, configFromJSON, asppRatesAt, type DeepLabV3Config, type AsppConfig } from './configs.js';
export { checkInferenceSettings, paddingForCrop, padMultipleOf, PADDINGS, type InferenceSettings, type Padding } from './inference.js';
