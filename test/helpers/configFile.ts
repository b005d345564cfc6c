import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config/load.js';
import type { PollbridgeConfig } from '../../src/config/types.js';
import { SIM_ENV } from './simConfig.js';

export type ConfigJson = { database: string; http?: { listen: string }; instances: { name: string; configuration: Record<string, unknown> }[] };

/** Edits a harness's config file and returns the config as the daemon would load it. */
export function rewrite(file: string, edit: (c: ConfigJson) => void): PollbridgeConfig {
  const json = JSON.parse(readFileSync(file, 'utf8')) as ConfigJson;
  edit(json);
  writeFileSync(file, JSON.stringify(json, null, 2));
  return loadConfig(file, { env: SIM_ENV });
}

/** A port free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
