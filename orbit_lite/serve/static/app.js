// orbit-lite's page: plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";
const KEY = "orbit-lite-collection";
const $ = (id) => document.getElementById(id);
let current = null; // {id, token}
let live = null; // {socket, stream, timer}
let lastSpoken = "";
let teaching = null; // the job whose progress the page follows

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (current) headers.Authorization = "Bearer " + current.token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function remember(c) {
  current = c;
  if (c) localStorage.setItem(KEY, JSON.stringify(c)); else localStorage.removeItem(KEY);
  document.body.classList.toggle("no-collection", !c);
  $("forget").hidden = !c;
  $("delete-collection").hidden = !c;
  say("collection-status", c ? "Collection " + c.id + " is open." : "No collection is open.");
}

function tokenLink(c) {
  return location.origin + "/#collection=" + encodeURIComponent(c.id) + "&token=" + encodeURIComponent(c.token);
}

async function createCollection() {
  const c = await (await api("/api/collections", { method: "POST" })).json();
  remember({ id: c.id, token: c.token });
  const link = $("token-link");
  link.href = tokenLink(current);
  link.textContent = tokenLink(current);
  $("token-box").hidden = false;
  await refresh();
  $("object-name").focus();
}

function videoItem(objectName, v) {
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.alt = "First frame of " + objectName + " video " + v.video_id;
  api(`/api/collections/${current.id}/videos/${v.video_id}/thumbnail.jpg`)
    .then((r) => r.blob()).then((b) => { img.src = URL.createObjectURL(b); }).catch(() => {});
  const text = document.createElement("span");
  text.textContent = `${v.frames} frames`;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "danger";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete this ${v.frames}-frame video of ${objectName}`);
  remove.onclick = () => act(async () => {
    await api(`/api/collections/${current.id}/videos/${v.video_id}`, { method: "DELETE" });
    await refresh();
  }, "teach-status");
  li.append(img, text, " ", remove);
  return li;
}

function objectCard(o, index) {
  const card = document.createElement("section");
  card.className = "object";
  card.setAttribute("aria-labelledby", `object-${index}`);
  const h = document.createElement("h3");
  h.id = `object-${index}`;
  h.textContent = `${o.name} (${o.videos.length} video${o.videos.length === 1 ? "" : "s"})`;
  const list = document.createElement("ul");
  list.className = "videos";
  o.videos.forEach((v) => list.append(videoItem(o.name, v)));
  const row = document.createElement("div");
  row.className = "row";
  const label = document.createElement("label");
  label.htmlFor = `upload-${index}`;
  label.textContent = `Upload clean videos of ${o.name}`;
  const input = document.createElement("input");
  input.type = "file";
  input.id = `upload-${index}`;
  input.multiple = true;
  input.accept = "video/*,.zip";
  input.dataset.object = o.name;
  input.onchange = () => act(() => uploadFiles(o.name, Array.from(input.files)), `status-${index}`);
  const record = document.createElement("button");
  record.type = "button";
  record.textContent = `Record 4 seconds of ${o.name}`;
  record.onclick = () => act(() => recordVideo(o.name, `status-${index}`), `status-${index}`);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "danger";
  remove.textContent = `Delete ${o.name}`;
  remove.onclick = () => act(async () => {
    await api(`/api/collections/${current.id}/objects/${encodeURIComponent(o.name)}`, { method: "DELETE" });
    await refresh();
  }, "teach-status");
  row.append(label, input, record, remove);
  const status = document.createElement("p");
  status.id = `status-${index}`;
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  card.append(h, list, row, status);
  return card;
}

async function uploadFiles(name, files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    await api(`/api/collections/${current.id}/objects/${encodeURIComponent(name)}/videos`, { method: "POST", body: form });
  }
  await refresh();
  announceUploads(name, files.length);
}

function announceUploads(name, count) {
  const index = Array.from(document.querySelectorAll("#objects input[type=file]")).findIndex((i) => i.dataset.object === name);
  if (index >= 0) say(`status-${index}`, `Added ${count} video${count === 1 ? "" : "s"} of ${name}.`);
}

async function recordVideo(name, statusId) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  say(statusId, `Recording ${name} for 4 seconds.`);
  recorder.start();
  await new Promise((r) => setTimeout(r, 4000));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  const file = new File(chunks, "recording.webm", { type: recorder.mimeType || "video/webm" });
  await uploadFiles(name, [file]);
}

async function refresh() {
  if (!current) return;
  const c = await (await api(`/api/collections/${current.id}`)).json();
  const box = $("objects");
  box.replaceChildren(...c.objects.map(objectCard));
  const taught = c.recognizer;
  $("download-pt").hidden = !taught;
  $("download-onnx").hidden = !taught;
  if (c.state === "ready" && taught) {
    say("teach-status", `Ready: taught ${new Date(taught.taught_at * 1000).toLocaleString()} from ${taught.videos.length} videos.`);
  } else if (c.state === "untaught") {
    say("teach-status", "Not taught yet.");
  } else if (c.state === "teaching" && c.latest_job && teaching === null) {
    act(() => follow(c.latest_job.job), "teach-status"); // a page opened while teaching follows it too
  }
  return c;
}

function showProgress(value, detail) {
  const bar = $("teach-progress");
  bar.value = value;
  bar.setAttribute("aria-valuetext", detail);
  $("teach-detail").textContent = detail;
}

async function teach() {
  const { job } = await (await api(`/api/collections/${current.id}/teach`, { method: "POST" })).json();
  say("teach-status", "Teaching started.");
  await follow(job);
}

// The bar and the detail line follow every poll; the live region speaks only a change of phase (the stage's text
// before its colon), so a screen reader is not read a new number twice a second.
async function follow(job) {
  if (teaching === job) return;
  teaching = job;
  let phase = "";
  try {
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const j = await (await api(`/api/jobs/${job}`)).json();
      const percent = Math.round(j.progress * 100);
      if (j.status === "done") { showProgress(1, "done (100%)"); await refresh(); return; }
      if (j.status === "failed") { showProgress(j.progress, ""); throw new Error(j.error); }
      const stage = j.status === "queued" ? "waiting for the teaching before it to finish" : j.stage;
      showProgress(j.progress, `${stage} (${percent}%)`);
      const now = stage.split(":")[0];
      if (now !== phase) { phase = now; say("teach-status", `Teaching: ${phase}.`); }
    }
  } finally {
    teaching = null;
  }
}

function speak(text) {
  if (!$("speak").checked || !("speechSynthesis" in window)) return;
  speechSynthesis.cancel();
  speechSynthesis.speak(new SpeechSynthesisUtterance(text));
}

function announce(answer) {
  const percent = Math.round(answer.probability * 100);
  const text = `${answer.prediction}, ${percent} percent`;
  // a screen reader hears a change of object, not every frame
  if (answer.prediction !== lastSpoken) {
    lastSpoken = answer.prediction;
    $("announce").textContent = text;
    speak(answer.prediction);
  }
}

async function startLive() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  const video = $("live-video");
  video.srcObject = stream;
  await video.play();
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(`${scheme}${location.host}/api/collections/${current.id}/live`);
  socket.binaryType = "arraybuffer";
  const canvas = document.createElement("canvas");
  live = { socket, stream };
  lastSpoken = "";
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  const send = () => {
    if (!live || socket.readyState !== WebSocket.OPEN) return;
    const side = Math.min(video.videoWidth, video.videoHeight, 320) || 160;
    canvas.width = side; canvas.height = side;
    const sx = (video.videoWidth - Math.min(video.videoWidth, video.videoHeight)) / 2;
    const sy = (video.videoHeight - Math.min(video.videoWidth, video.videoHeight)) / 2;
    const s = Math.min(video.videoWidth, video.videoHeight);
    canvas.getContext("2d").drawImage(video, sx, sy, s, s, 0, 0, side, side);
    canvas.toBlob((blob) => blob && blob.arrayBuffer().then((b) => socket.readyState === WebSocket.OPEN && socket.send(b)), "image/jpeg", 0.85);
  };
  socket.onopen = () => { socket.send(JSON.stringify({ token: current.token })); send(); };
  socket.onmessage = (event) => {
    const answer = JSON.parse(event.data);
    if (answer.error) { say("announce", answer.error, true); return; }
    announce(answer);
    setTimeout(send, 100); // one frame in flight: the server is never flooded
  };
  socket.onclose = () => stopLive();
}

function stopLive() {
  if (!live) return;
  live.stream.getTracks().forEach((t) => t.stop());
  if (live.socket.readyState === WebSocket.OPEN) live.socket.close();
  live = null;
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
}

function drawPlot(result) {
  const svg = $("plot");
  const input = result.inputs[0];
  const frames = input.per_frame;
  const colours = ["#0b3d91", "#c60", "#006400", "#8b0000", "#4b0082", "#000", "#8b4513", "#2f4f4f"];
  const w = 600, h = 240, pad = 30;
  const x = (i) => pad + (frames.length > 1 ? (i / (frames.length - 1)) * (w - 2 * pad) : 0);
  const y = (p) => h - pad - p * (h - 2 * pad);
  const parts = [`<line x1="${pad}" y1="${y(0)}" x2="${w - pad}" y2="${y(0)}" stroke="#000"/>`,
    `<line x1="${pad}" y1="${y(0)}" x2="${pad}" y2="${y(1)}" stroke="#000"/>`];
  result.objects.forEach((name, k) => {
    const points = frames.map((f, i) => `${x(i)},${y(f.probabilities[k])}`).join(" ");
    parts.push(`<polyline fill="none" stroke-width="3" stroke="${colours[k % colours.length]}" points="${points}"/>`);
    parts.push(`<text x="${w - pad - 140}" y="${pad + 18 * k}" fill="${colours[k % colours.length]}">${escapeXml(name)}</text>`);
  });
  svg.innerHTML = parts.join("");
  $("plot-caption").textContent = `Probability of each object per frame over ${frames.length} frames; ` +
    `the video shows ${input.prediction} (mean probability ${Math.round(input.confidence * 100)} percent).`;
  $("plot-figure").hidden = false;
}

function escapeXml(s) {
  return s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function recognizeFile() {
  const file = $("recognize-file").files[0];
  if (!file) return;
  say("recognize-status", "Recognizing.");
  const form = new FormData();
  form.append("file", file, file.name);
  const result = await (await api(`/api/collections/${current.id}/recognize`, { method: "POST", body: form })).json();
  const input = result.inputs[0];
  say("recognize-status", `It shows ${input.prediction} (${input.frames} frames, mean probability ${Math.round(input.confidence * 100)} percent).`);
  speak(input.prediction);
  drawPlot(result);
  if (input.frames > 1) {
    const again = new FormData();
    again.append("file", file, file.name);
    const video = await (await api(`/api/collections/${current.id}/recognize?annotate=1`, { method: "POST", body: again })).blob();
    $("annotated").src = URL.createObjectURL(video);
    $("annotated").hidden = false;
  }
}

async function download(suffix) {
  const blob = await (await api(`/api/collections/${current.id}/recognizer.${suffix}`)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `recognizer.${suffix}`;
  a.click();
}

async function act(fn, statusId) {
  try { await fn(); } catch (e) { say(statusId, "Error: " + e.message, true); }
}

function openFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("collection") && params.get("token")) {
    remember({ id: params.get("collection"), token: params.get("token") });
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
    return true;
  }
  return false;
}

function init() {
  $("create").onclick = () => act(createCollection, "collection-status");
  $("forget").onclick = () => { stopLive(); remember(null); $("token-box").hidden = true; $("objects").replaceChildren(); };
  $("delete-collection").onclick = () => act(async () => {
    if (!confirm("Delete this collection and every video of it?")) return;
    await api(`/api/collections/${current.id}`, { method: "DELETE" });
    stopLive(); remember(null); $("token-box").hidden = true;
  }, "collection-status");
  $("open-form").onsubmit = (e) => {
    e.preventDefault();
    remember({ id: $("open-id").value.trim(), token: $("open-token").value.trim() });
    act(refresh, "collection-status");
  };
  $("object-form").onsubmit = (e) => {
    e.preventDefault();
    const name = $("object-name").value;
    act(async () => {
      await api(`/api/collections/${current.id}/objects/${encodeURIComponent(name)}`, { method: "PUT" });
      $("object-name").value = "";
      await refresh();
      say("object-status", `Added ${name}.`);
    }, "object-status");
  };
  $("teach").onclick = () => act(teach, "teach-status");
  $("live-start").onclick = () => act(startLive, "announce");
  $("live-stop").onclick = stopLive;
  $("recognize-form").onsubmit = (e) => { e.preventDefault(); act(recognizeFile, "recognize-status"); };
  $("download-pt").onclick = (e) => { e.preventDefault(); act(() => download("pt"), "teach-status"); };
  $("download-onnx").onclick = (e) => { e.preventDefault(); act(() => download("onnx"), "teach-status"); };
  const saved = localStorage.getItem(KEY);
  if (!openFromHash() && saved) remember(JSON.parse(saved)); else if (!current) remember(null);
  act(refresh, "collection-status");
}

init();
