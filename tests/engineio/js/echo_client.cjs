// Drive our Engine.IO server with the official engine.io-client.
// Usage: node echo_client.cjs URL TRANSPORTS STAY_MS
//   TRANSPORTS: polling | websocket | polling,websocket
// Sends a text and a binary message, waits for both echoes (and the upgrade
// when both transports are allowed), stays connected STAY_MS (heartbeats must
// keep the session alive), sends "still here", waits for its echo, then prints
// one JSON line and exits.
const { Socket } = require("engine.io-client");

const [url, transports, stayMs] = process.argv.slice(2);
const wanted = transports.split(",");
const result = { opened: false, echoes: [], transport: null, upgraded: false };
const socket = new Socket(url, { path: "/engine.io/", transports: wanted });

const timer = setTimeout(() => finish("timeout"), 8000 + Number(stayMs));
let stayed = false;

let finished = false;

function finish(error) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  result.error = error || null;
  result.transport = socket.transport ? socket.transport.name : null;
  console.log(JSON.stringify(result));
  socket.close();
  process.exit(0);
}

function maybeDone() {
  const upgradeOk = wanted.length === 1 || result.upgraded;
  if (result.echoes.length === 3) finish();
  if (result.echoes.length === 2 && upgradeOk && !stayed) {
    stayed = true;
    setTimeout(() => socket.send("still here"), Number(stayMs));
  }
}

socket.on("open", () => {
  result.opened = true;
  socket.send("hello µm");
  socket.send(Uint8Array.from([1, 2, 3, 250]));
});
socket.on("upgrade", () => {
  result.upgraded = true;
  maybeDone();
});
socket.on("message", (data) => {
  result.echoes.push(typeof data === "string" ? data : Array.from(new Uint8Array(data)));
  maybeDone();
});
socket.on("error", (err) => finish(String(err)));
socket.on("close", (reason) => finish("closed: " + reason));
