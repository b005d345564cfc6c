export { verifyNotification, VerificationError, amplifySignature, standardSignature, signatureHeaders } from './deliver/sign.js';
export type { VerifyOptions, SigningKeys } from './deliver/sign.js';
export { loadConfig, readConfig } from './config/load.js';
export { ConfigError } from './config/issues.js';
export type { PollbridgeConfig, InstanceConfig, ResourceConfig } from './config/types.js';
export { Daemon } from './daemon/daemon.js';
export type { DaemonOptions } from './daemon/daemon.js';
export { ConcurSim } from './sim/concurSim.js';
