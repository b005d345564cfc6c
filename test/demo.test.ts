import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

describe('npm run demo', () => {
  it('prints events that its receiver verified, and cleans up after itself', async () => {
    const result = await runCli(['demo', '--events', '12', '--seconds', '25', '--rate', '10']);
    expect(result.code).toBe(0);
    const verified = result.stdout.split('\n').filter((l) => l.startsWith('verified '));
    expect(verified.length).toBeGreaterThanOrEqual(12);
    for (const line of verified) expect(line).toMatch(/^verified {2}(polled|pushed) {2}(CREATED|UPDATED) +reports {2}[0-9A-F]{20} {2}\d{4}-\d\d-\d\dT[\d:.]+Z {2}notification [0-9A-Z]{26}$/);
    // A third of the updates enter Submitted, which the simulator pushes: both kinds show.
    expect(verified.some((l) => l.startsWith('verified  pushed  UPDATED'))).toBe(true);
    expect(verified.some((l) => l.startsWith('verified  polled  '))).toBe(true);
    expect(result.stdout).not.toContain('REJECTED');
    expect(result.stdout).toMatch(/\d+ event\(s\) received and verified/);
  });
});
