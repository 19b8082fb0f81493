// piscina's entry for the decode worker, in CommonJS on purpose.
//
// piscina loads a task file with require() first. On Node 20.19+ require() of an ES module works,
// but a worker terminated while that require() is instantiating the module aborts the whole
// process (a failed assertion in node::loader::ModuleWrap::CreateRequiredModuleFacade, SIGABRT):
// seen when kwx was stopped right after it started, before the pool's first worker had loaded
// (test/foundation/start.test.ts under load). This entry is plain CommonJS, so require() has no
// ES module to instantiate; it loads the decoder with import(), which a terminating worker
// survives.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Decode = (task: any) => unknown;

let run: Decode | undefined;
const ready: Promise<void> = import('./decode-worker.js').then((m: { default: Decode }) => {
  run = m.default;
});

async function decodeTask(task: unknown): Promise<unknown> {
  if (run === undefined) await ready;
  return (run as Decode)(task);
}

export = decodeTask;
