// The rig page: a read-only observer of ephysd, with Stop buttons.
//
// It joins the daemon's Socket.IO API with auth {role: "observer"} and shows
// the rig_state events the daemon pushes. Everything it shows goes in through
// textContent or SVG attributes, never as HTML, so a manipulator name or an
// error text cannot become markup. Stops go out as the API's own stop and
// stop_all events, exactly what the controlling client would send.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const PLOT = 56; // px, the square of a manipulator's x-z travel
  const BAR = 8; // px, the depth bar beside it
  const ANSWER_TIMEOUT_MS = 5000;
  const STALE_AFTER_MS = 3000; // the daemon pushes at least once a second
  const RETRY_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // manipulator id -> its row's cells
  let dimensions = { x: 20, y: 20, z: 20, w: 20 };
  let lastPush = 0;
  let socket = null;

  function tokenFromAddress() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    return fragment.get("token") || window.sessionStorage.getItem("ephysd-token") || "";
  }

  function setText(element, text, className) {
    element.textContent = text;
    if (className !== undefined) element.className = className;
  }

  function notice(text, className) {
    setText($("notice"), text, className || "");
  }

  function mm(value) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(3) : "-";
  }

  function svg(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    return element;
  }

  function fraction(value, span) {
    if (typeof value !== "number" || !Number.isFinite(value) || !(span > 0)) return 0;
    return Math.min(1, Math.max(0, value / span));
  }

  function newRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.id = id;
    const cell = (className) => {
      const td = document.createElement("td");
      if (className) td.className = className;
      tr.appendChild(td);
      return td;
    };
    const cells = {
      id: cell("id"),
      x: cell("num"),
      y: cell("num"),
      z: cell("num"),
      w: cell("num"),
      plot: cell("plot"),
      state: cell("state"),
      inside: cell(),
      error: cell("error"),
      stop: cell(),
    };
    cells.id.textContent = id;
    const plot = svg("svg", {
      class: "travel",
      width: PLOT + BAR + 6,
      height: PLOT,
      viewBox: `0 0 ${PLOT + BAR + 6} ${PLOT}`,
      role: "img",
    });
    plot.appendChild(svg("rect", { class: "area", x: 0.5, y: 0.5, width: PLOT - 1, height: PLOT - 1 }));
    cells.dot = svg("circle", { class: "probe", r: 4, cx: 0, cy: PLOT });
    plot.appendChild(cells.dot);
    plot.appendChild(svg("rect", { class: "area", x: PLOT + 5.5, y: 0.5, width: BAR - 1, height: PLOT - 1 }));
    cells.depth = svg("rect", { class: "depth", x: PLOT + 6, y: 1, width: BAR - 2, height: 0 });
    plot.appendChild(cells.depth);
    cells.label = svg("title", {});
    plot.appendChild(cells.label);
    cells.plot.appendChild(plot);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "stop stop-one";
    button.textContent = "Stop";
    button.setAttribute("aria-label", `Stop manipulator ${id}`);
    button.addEventListener("click", () => stop("stop", id));
    cells.stop.appendChild(button);
    $("rows").appendChild(tr);
    return cells;
  }

  function showManipulator(m) {
    const id = String(m.Id);
    const cells = rows.get(id) || newRow(id);
    rows.set(id, cells);
    const p = m.Position;
    for (const axis of ["x", "y", "z", "w"]) setText(cells[axis], mm(p ? p[axis] : null));
    const across = fraction(p ? p.x : null, dimensions.x) * (PLOT - 8) + 4;
    const up = PLOT - (fraction(p ? p.z : null, dimensions.z) * (PLOT - 8) + 4);
    cells.dot.setAttribute("cx", across.toFixed(1));
    cells.dot.setAttribute("cy", up.toFixed(1));
    const depth = fraction(p ? p.w : null, dimensions.w) * (PLOT - 2);
    cells.depth.setAttribute("height", depth.toFixed(1));
    cells.label.textContent = p
      ? `manipulator ${id}: x ${mm(p.x)}, z ${mm(p.z)}, depth ${mm(p.w)} mm`
      : `manipulator ${id}: position unknown`;
    const state = String(m.State);
    const shown = state === "offline" && m.Reason ? `offline: ${m.Reason}` : state;
    setText(cells.state, shown, `state state-${state === "moving" || state === "offline" ? state : "idle"}`);
    setText(cells.inside, m.InsideBrain ? "yes" : "no", m.InsideBrain ? "warn" : "");
    setText(cells.error, m.LastError ? String(m.LastError) : "");
    cells.error.title = m.LastError ? String(m.LastError) : "";
  }

  function showState(state) {
    lastPush = Date.now();
    const seen = new Set();
    for (const m of state.Manipulators || []) {
      showManipulator(m);
      seen.add(String(m.Id));
    }
    for (const [id, cells] of rows) {
      if (!seen.has(id)) {
        cells.id.parentElement.remove();
        rows.delete(id);
      }
    }
    const controller = state.Controller;
    setText($("controller"), controller ? String(controller) : "none", controller ? "" : "muted");
    const estop = state.EStop || {};
    if (!estop.Configured) {
      setText($("estop"), "not configured", "muted");
    } else if (estop.Armed) {
      setText($("estop"), `armed (${estop.Device})`, "good");
    } else {
      setText($("estop"), `NOT ARMED: ${estop.Device} lost, reopening`, "bad");
    }
    const when = new Date(Number(state.Time) * 1000);
    setText($("updated"), Number.isNaN(when.getTime()) ? "-" : when.toLocaleTimeString());
  }

  async function stop(event, id) {
    const what = id === undefined ? "every manipulator" : `manipulator ${id}`;
    if (!socket || !socket.connected) {
      notice(`Not connected: ${what} was NOT stopped. Use the controller or the e-stop.`, "bad");
      return;
    }
    notice(`Stopping ${what}...`, "warn");
    try {
      const args = id === undefined ? [event] : [event, id];
      const answer = await socket.timeout(ANSWER_TIMEOUT_MS).emitWithAck(...args);
      if (answer === "") notice(`Stopped ${what}.`, "good");
      else notice(`Stop of ${what} failed: ${answer}`, "bad");
    } catch (error) {
      notice(`Stop of ${what}: no answer in ${ANSWER_TIMEOUT_MS / 1000} s (${error.message})`, "bad");
    }
  }

  async function greet() {
    setText($("link"), "live", "good");
    notice("");
    try {
      const info = JSON.parse(await socket.timeout(ANSWER_TIMEOUT_MS).emitWithAck("get_platform_info"));
      dimensions = info.Dimensions || dimensions;
      setText($("platform"), String(info.Name), "muted");
    } catch (error) {
      notice(`Could not read the platform: ${error.message}`, "bad");
    }
  }

  function connect(token) {
    if (socket) socket.close();
    const auth = { role: "observer", name: "rig page" };
    if (token) auth.token = token;
    socket = window.io({ auth, reconnectionDelayMax: RETRY_MS });
    socket.on("connect", greet);
    socket.on("rig_state", (text) => showState(JSON.parse(text)));
    socket.on("disconnect", (reason) => {
      setText($("link"), `disconnected (${reason}), retrying`, "bad");
    });
    socket.on("connect_error", (error) => {
      setText($("link"), "not connected", "bad");
      notice(`Not connected: ${error.message}`, "bad");
      if (error.message === "Invalid token.") {
        $("token-form").hidden = false;
      } else if (!socket.active) {
        // Refused by the daemon (e.g. too many observers): ask again later.
        window.setTimeout(() => socket.connect(), RETRY_MS);
      }
    });
  }

  function watchStaleness() {
    window.setInterval(() => {
      if (socket && socket.connected && lastPush && Date.now() - lastPush > STALE_AFTER_MS) {
        setText($("link"), "connected, but no update for a while", "warn");
      } else if (socket && socket.connected && lastPush) {
        setText($("link"), "live", "good");
      }
    }, 1000);
  }

  $("stop-all").addEventListener("click", () => stop("stop_all"));
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value;
    window.sessionStorage.setItem("ephysd-token", token);
    $("token-form").hidden = true;
    connect(token);
  });
  watchStaleness();
  connect(tokenFromAddress());
})();
