// A separate process that contends for a LocalLockProvider lock (built code in dist/).
//
//   node lock-worker.mjs duel <lockDir> <name>
//     reads lines from stdin: "go <round>" -> acquire with waitMs 0 and print one JSON line
//     {round, won, took?, code?, message?}; "release <round>" -> release, print {round, released};
//     "exit" -> exit.
//   node lock-worker.mjs stress <lockDir> <name> <rounds> <markerFile>
//     acquires (waitMs 60 s) `rounds` times; inside, creates <markerFile> with O_EXCL (failing if
//     another holder is inside), waits 0-3 ms, removes it. Prints {acquired, takeovers, overlaps}.
import { constants, promises as fsp } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { LocalLockProvider } = await import(join(root, 'dist', 'coordination', 'local-lock.js'));

const [mode, dir, name, rounds, marker] = process.argv.slice(2);
const locks = new LocalLockProvider(dir);
const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'duel') {
  const held = new Map();
  print({ ready: true, pid: process.pid });
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, r] = line.trim().split(' ');
    const round = Number(r);
    if (cmd === 'go') {
      let took;
      try {
        const h = await locks.acquire(name, { waitMs: 0, purpose: 'duel', onTakeover: (prev) => (took = prev.pid) });
        held.set(round, h);
        print({ round, won: true, ...(took !== undefined ? { took } : {}) });
      } catch (e) {
        print({ round, won: false, code: e.code, message: e.message });
      }
    } else if (cmd === 'release') {
      await held.get(round)?.release();
      held.delete(round);
      print({ round, released: true });
    } else if (cmd === 'exit') {
      process.exit(0);
    }
  }
} else if (mode === 'stress') {
  let acquired = 0;
  let takeovers = 0;
  let overlaps = 0;
  for (let i = 0; i < Number(rounds); i++) {
    const h = await locks.acquire(name, { waitMs: 60_000, purpose: 'stress', onTakeover: () => takeovers++ });
    acquired++;
    let fh;
    try {
      fh = await fsp.open(marker, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch {
      overlaps++;
    }
    await new Promise((r) => setTimeout(r, Math.random() * 3));
    if (fh) {
      await fh.close();
      await fsp.unlink(marker);
    }
    await h.release();
  }
  print({ acquired, takeovers, overlaps });
} else {
  process.stderr.write('usage: lock-worker.mjs duel|stress ...\n');
  process.exit(2);
}
