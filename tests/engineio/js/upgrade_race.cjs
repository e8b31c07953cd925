// Polls right after sending "2probe" and "5" on the upgrading WebSocket, the
// way the official test suite does, and prints the poll statuses as JSON.
// Usage: node upgrade_race.cjs BASE_URL PATH COUNT
const WebSocket = require("ws");

const [base, path, count] = process.argv.slice(2);

async function once() {
  const opened = await fetch(`${base}${path}?EIO=4&transport=polling`);
  const sid = JSON.parse((await opened.text()).substring(1)).sid;
  const ws = new WebSocket(`${base.replace("http", "ws")}${path}?EIO=4&transport=websocket&sid=${sid}`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  ws.send("2probe");
  ws.send("5");
  const poll = await fetch(`${base}${path}?EIO=4&transport=polling&sid=${sid}`);
  const status = [poll.status, await poll.text()];
  ws.close();
  return status;
}

(async () => {
  const statuses = [];
  for (let i = 0; i < Number(count); i++) statuses.push(await once());
  console.log(JSON.stringify(statuses));
})().catch((error) => {
  console.log(JSON.stringify({ error: String(error) }));
  process.exit(1);
});
