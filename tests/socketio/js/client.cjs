// Drive our server with the official socket.io-client, print one JSON line of results.
// Usage: node client.cjs URL polling|websocket|upgrade
"use strict";
const { io } = require("socket.io-client");

const [url, mode] = process.argv.slice(2);
const transports = {
  polling: ["polling"],
  websocket: ["websocket"],
  upgrade: ["polling", "websocket"],
}[mode];

function fail(message) {
  console.log(JSON.stringify({ error: String(message) }));
  process.exit(1);
}
setTimeout(() => fail("timed out"), 15000).unref();

const socket = io(url, {
  transports,
  upgrade: mode === "upgrade",
  auth: { token: "js" },
  reconnection: false,
  timeout: 5000,
});

socket.on("question", (...args) => {
  const callback = args.pop();
  callback("answer", ...args);
});
socket.on("connect_error", (err) => fail("connect_error: " + err.message));

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

let firstTransport = null;
let markUpgraded;
const upgraded = new Promise((resolve) => (markUpgraded = resolve));
socket.io.on("open", () => {
  firstTransport = socket.io.engine.transport.name;
  socket.io.engine.on("upgrade", markUpgraded);
});

async function main() {
  await once(socket, "connect");
  if (mode === "upgrade") {
    await upgraded;
  }
  // emitWithAck would keep only the first ack argument; collect them all.
  const ack = (...args) =>
    new Promise((resolve, reject) =>
      socket.timeout(5000).emit(...args, (err, ...ackArgs) => (err ? reject(err) : resolve(ackArgs)))
    );
  const echo = await ack("echo", "a", 1, { b: [true, null] });
  const binary = await ack("echo", Buffer.from([1, 2, 3]), { nested: Buffer.from([255]) });
  const echoed = once(socket, "echoed");
  socket.emit("emit_back", "x", Buffer.from([9]));
  const [echoedArgs] = await Promise.all([echoed]);
  const asked = await ack("ask_client", "q");
  const welcome = socket.receivedWelcome;
  console.log(
    JSON.stringify({
      firstTransport,
      finalTransport: socket.io.engine.transport.name,
      welcome,
      echo,
      binary: [Array.from(binary[0]), Array.from(binary[1].nested)],
      binaryIsBuffer: Buffer.isBuffer(binary[0]),
      echoed: [echoedArgs[0], Array.from(echoedArgs[1])],
      asked,
    })
  );
  socket.disconnect();
  process.exit(0);
}

socket.on("welcome", (auth) => {
  socket.receivedWelcome = auth;
});
main().catch(fail);
