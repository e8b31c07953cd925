// The official JavaScript socket.io-client driven by a JSON list of steps.
// Usage: node steps.js URL STEPS_JSON. Same steps and output as
// ../clients/sio_steps.py: one JSON line per step result.
"use strict";
const { io } = require("socket.io-client");

function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

async function main(url, steps) {
  let socket = null;
  const pending = [];
  const spawned = [];
  for (const step of steps) {
    const kind = step[0];
    if (kind === "connect") {
      const transports = step.length > 1 && step[1] ? step[1] : ["polling", "websocket"];
      const options = { transports, reconnection: false, timeout: 5000 };
      if (step.length > 2 && step[2]) options.auth = step[2];
      // Node sends no Origin of its own; a test may play a browser page's.
      if (step.length > 3 && step[3]) options.extraHeaders = step[3];
      socket = io(url, options);
      const outcome = await new Promise((resolve) => {
        socket.once("connect", () => resolve({ connected: socket.io.engine.transport.name }));
        socket.once("connect_error", (err) => resolve({ refused: { message: err.message } }));
      });
      say(outcome);
    } else if (kind === "call") {
      say(await socket.timeout(20000).emitWithAck(step[1], ...step.slice(2)));
    } else if (kind === "start") {
      // A call still pending at disconnect rejects; report it, do not crash.
      const call = socket.timeout(20000).emitWithAck(step[1], ...step.slice(2));
      pending.push(call.catch((err) => ({ rejected: String(err.message || err) })));
      await new Promise((r) => setTimeout(r, 50));
      say("started");
    } else if (kind === "finish") {
      say(await pending.shift());
    } else if (kind === "spawn") {
      const event = step[1];
      spawned.push(
        socket.timeout(20000).emitWithAck(event, ...step.slice(2)).then((answer) => say({ event, answer }))
      );
      await new Promise((r) => setTimeout(r, 50));
    } else if (kind === "join") {
      await Promise.all(spawned);
    } else if (kind === "emit") {
      socket.emit(step[1], ...step.slice(2));
      say("emitted");
    } else if (kind === "sleep") {
      await new Promise((r) => setTimeout(r, step[1] * 1000));
    } else if (kind === "disconnect") {
      socket.disconnect();
      // Let the DISCONNECT packet leave before the process exits.
      await new Promise((r) => setTimeout(r, 200));
      say("disconnected");
    } else if (kind === "print") {
      say(step[1]);
    }
  }
  if (socket) socket.close();
}

main(process.argv[2], JSON.parse(process.argv[3])).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
    process.exit(1);
  }
);
