// The drawing page: pointer strokes on a canvas, a prediction shortly after each stroke,
// the top k as bars and the 28x28 input the model saw. What the model reads and how many
// guesses it ranks come from the server's /info. Talks only to this server (/info, /predict).
"use strict";

const PREDICT_URL = "predict"; // relative, so the page also works behind a path prefix
const INFO_URL = "info";
const DELAY_MS = 150; // after a stroke ends, before asking (a quick next stroke resets it)

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const clearButton = document.getElementById("clear");
const fileInput = document.getElementById("file");
const statusLine = document.getElementById("status");
const predictionEl = document.getElementById("prediction");
const probabilityEl = document.getElementById("probability");
const topList = document.getElementById("top");
const inputImage = document.getElementById("input");
const classesEl = document.getElementById("classes");
const topTitle = document.getElementById("top-title");

let drawing = false;
let hasInk = false;
let timer = null;
let sequence = 0; // answers to superseded requests are dropped

function resetCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = pad.width / 14;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function showResult(result) {
  predictionEl.textContent = result.prediction;
  probabilityEl.textContent = `${(result.probability * 100).toFixed(1)}%`;
  topList.replaceChildren(
    ...result.top.map(({ character, probability }) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = character;
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = `${(probability * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(probability * 100).toFixed(1)}%`;
      item.append(name, track, value);
      return item;
    }),
  );
  inputImage.src = `data:image/png;base64,${result.input}`;
  inputImage.hidden = false;
}

function clearResult() {
  predictionEl.textContent = "\u2013";
  probabilityEl.textContent = "";
  topList.replaceChildren();
  inputImage.hidden = true;
  inputImage.removeAttribute("src");
}

async function send(image, filename, label) {
  const mine = ++sequence;
  const form = new FormData();
  form.append("image", image, filename);
  setStatus("Reading\u2026");
  try {
    const response = await fetch(PREDICT_URL, { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (mine !== sequence) return;
    if (!response.ok) {
      setStatus(body.detail || `The server answered ${response.status}.`, true);
      return;
    }
    showResult(body);
    // Also here, beside the canvas: on a phone the result panel is below the fold.
    setStatus(`${label}: ${body.prediction} (${(body.probability * 100).toFixed(1)}%)`);
  } catch (error) {
    if (mine === sequence) setStatus(`Cannot reach the server (${error.message}).`, true);
  }
}

function predictDrawing() {
  timer = null;
  if (!hasInk) return;
  pad.toBlob((blob) => send(blob, "drawing.png", "Your drawing"), "image/png");
}

function clearAll() {
  clearTimeout(timer);
  timer = null;
  sequence++;
  hasInk = false;
  resetCanvas();
  clearResult();
  fileInput.value = "";
  setStatus("Cleared. Draw with the mouse, a finger or a pen.");
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  clearTimeout(timer);
  const [x, y] = point(event);
  ctx.beginPath();
  ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(x, y);
  hasInk = true;
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const [x, y] = point(e);
    ctx.lineTo(x, y);
  }
  ctx.stroke();
  const [x, y] = point(event);
  ctx.beginPath();
  ctx.moveTo(x, y);
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  clearTimeout(timer);
  timer = setTimeout(predictDrawing, DELAY_MS);
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
clearButton.addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") clearAll();
});

fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  if (!file) return;
  clearTimeout(timer);
  hasInk = false;
  resetCanvas();
  send(file, file.name, file.name);
});

// Whole groups of characters a model may know, named; its other classes are listed.
const CLASS_GROUPS = [
  ["0123456789", "a digit"],
  ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a capital letter"],
  ["abcdefghijklmnopqrstuvwxyz", "a small letter"],
];

// The model's classes as parts of a sentence, each part a list of strings and elements.
function classParts(classes) {
  const left = new Set(classes);
  const parts = [];
  for (const [members, name] of CLASS_GROUPS) {
    if ([...members].every((c) => left.has(c))) {
      parts.push([name]);
      for (const c of members) left.delete(c);
    }
  }
  // EMNIST's letters split files both cases under the small letters: "a letter".
  if (parts.length === 1 && parts[0][0] === "a small letter" && !left.size) parts[0][0] = "a letter";
  const rest = classes.filter((c) => left.has(c));
  if (rest.length) {
    const listed = document.createElement("span");
    listed.className = "mono";
    listed.textContent = rest.join(" ");
    parts.push([rest.length > 1 ? "one of " : "", listed]);
  }
  return parts;
}

// "A digit, a capital letter or one of a b d e f g h n q r t"
function classSentence(classes) {
  const items = [];
  classParts(classes).forEach((part, index, parts) => {
    if (index > 0) items.push(index === parts.length - 1 ? " or " : ", ");
    items.push(...part);
  });
  if (typeof items[0] === "string") items[0] = items[0].charAt(0).toUpperCase() + items[0].slice(1);
  return items;
}

async function readInfo() {
  try {
    const response = await fetch(INFO_URL);
    const model = response.ok ? (await response.json()).model : null;
    if (!model || !Array.isArray(model.classes)) return;
    topTitle.textContent = `Top ${model.top_k}`;
    classesEl.replaceChildren(...classSentence(model.classes));
  } catch {
    // The page still reads drawings without it; the header stays generic.
  }
}

resetCanvas();
readInfo();
