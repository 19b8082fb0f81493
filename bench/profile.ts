// A V8 CPU profile of this thread over one phase of a benchmark (`--profile FILE`), readable in
// Chrome DevTools or any .cpuprofile viewer. Worker threads are not covered: run node with
// --cpu-prof for theirs.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

/** Starts profiling; the returned function stops it and writes the profile to `file`. */
export async function startProfile(file: string, sampleIntervalUs = 100): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: sampleIntervalUs });
  await post('Profiler.start');
  return async () => {
    const r = (await post('Profiler.stop')) as { profile: unknown };
    writeFileSync(file, JSON.stringify(r.profile));
    session.disconnect();
    process.stderr.write(`CPU profile of the main thread written to ${file}\n`);
  };
}
