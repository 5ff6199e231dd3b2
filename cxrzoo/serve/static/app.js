// The page of cxrzoo serve: plain JavaScript, no build step. It talks to the same JSON API as
// any client: GET /v1/models, POST /v1/preview, /v1/models/NAME/predict and .../explain.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: {}, file: null, result: null, explainSeq: 0 };

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function failure(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.detail || body.error || response.statusText}`;
  } catch (e) {
    return `${response.status}: ${response.statusText}`;
  }
}

async function post(path, file) {
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  return fetch(path, { method: "POST", body: form, headers: headers() });
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) {
    status(`Could not list the models (${await failure(response)}).` +
      (response.status === 401 ? " Enter the server's token above." : ""), true);
    return;
  }
  const { models } = await response.json();
  const select = $("model");
  const previous = select.value;
  select.innerHTML = "";
  state.models = {};
  for (const m of models) {
    state.models[m.name] = m;
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.architecture})`;
    select.appendChild(option);
  }
  if (previous && state.models[previous]) select.value = previous;
  showCard();
}

function showCard() {
  const m = state.models[$("model").value];
  $("card").textContent = m ? (m.card || "(this model has no card)") : "";
}

function drawChart(result) {
  const chart = $("chart");
  chart.innerHTML = "";
  chart.classList.toggle("spread", Boolean(result.uncertainty));
  const labels = Object.keys(result.probabilities)
    .sort((a, b) => result.probabilities[b] - result.probabilities[a]);
  for (const label of labels) {
    const p = result.probabilities[label];
    const t = result.thresholds[label];
    const positive = result.positive.includes(label);
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.finding = label;
    row.title = `${label}: ${p.toFixed(3)} (threshold ${t.toFixed(3)})`;
    row.innerHTML =
      `<span class="name"></span><span class="track"><span class="bar"></span>` +
      `<span class="threshold"></span></span><span class="value"></span>`;
    row.querySelector(".name").textContent = label;
    const bar = row.querySelector(".bar");
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.classList.toggle("positive", positive);
    row.querySelector(".threshold").style.left = `calc(${(100 * t).toFixed(1)}% - 1px)`;
    const spread = result.uncertainty && typeof result.uncertainty[label] === "number" ? result.uncertainty[label] : null;
    row.querySelector(".value").textContent = p.toFixed(3) + (spread === null ? "" : ` ±${spread.toFixed(2)}`);
    row.addEventListener("click", () => chooseFinding(label));
    chart.appendChild(row);
  }
  const select = $("finding");
  select.innerHTML = "";
  for (const label of labels) {
    const option = document.createElement("option");
    option.value = label;
    option.textContent = `${label} (${result.probabilities[label].toFixed(2)})`;
    select.appendChild(option);
  }
  $("explain").hidden = false;
}

function showBanner(result) {
  const banner = $("ood-banner");
  if (result.in_distribution === false) {
    const score = typeof result.ood_score === "number" ? ` (out-of-distribution score ${result.ood_score.toFixed(2)})` : "";
    banner.textContent = "Out of distribution: this image is unlike the radiographs the model was trained on" +
      score + ". Its findings may be unreliable.";
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.textContent = "";
  }
}

async function chooseFinding(label) {
  $("finding").value = label;
  for (const row of $("chart").children) row.classList.toggle("chosen", row.dataset.finding === label);
  await explain(label);
}

async function explain(label) {
  if (!state.file) return;
  const seq = ++state.explainSeq;
  const model = $("model").value;
  const img = $("overlay");
  img.dataset.ready = "false";
  const response = await post(`/v1/models/${encodeURIComponent(model)}/explain?finding=${encodeURIComponent(label)}`, state.file);
  if (seq !== state.explainSeq) return;  // a later choice is on its way
  if (!response.ok) {
    status(`Grad-CAM failed (${await failure(response)}).`, true);
    return;
  }
  const blob = await response.blob();
  img.onload = () => { img.dataset.ready = "true"; img.dataset.finding = label; };
  img.src = URL.createObjectURL(blob);
  img.alt = `Grad-CAM overlay of ${label}`;
  img.hidden = false;
}

async function analyse(file) {
  state.file = file;
  state.result = null;
  const model = $("model").value;
  if (!model) {
    status("No model to predict with: the server lists none (or needs its token).", true);
    return;
  }
  status(`Reading ${file.name}…`);
  document.body.dataset.state = "working";
  const preview = await post("/v1/preview", file);
  if (!preview.ok) {
    status(`${file.name} could not be used (${await failure(preview)}).`, true);
    document.body.dataset.state = "error";
    return;
  }
  const img = $("preview");
  img.src = URL.createObjectURL(await preview.blob());
  img.hidden = false;
  status(`Predicting ${file.name} with ${model}…`);
  const response = await post(`/v1/models/${encodeURIComponent(model)}/predict`, file);
  if (!response.ok) {
    status(`Prediction failed (${await failure(response)}).`, true);
    document.body.dataset.state = "error";
    return;
  }
  const result = await response.json();
  state.result = result;
  drawChart(result);
  showBanner(result);
  const calls = result.positive.length ? result.positive.join(", ") : "none";
  const note = result.calibrated ? "" : " (uncalibrated model: thresholds are 0.5)";
  status(`${file.name}: positive findings: ${calls}${note}.`);
  document.body.dataset.state = "done";
  const top = Object.keys(result.probabilities)
    .sort((a, b) => result.probabilities[b] - result.probabilities[a])[0];
  await chooseFinding(top);
}

function setUp() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => { if (e.target.files.length) analyse(e.target.files[0]); });
  $("finding").addEventListener("change", (e) => chooseFinding(e.target.value));
  $("model").addEventListener("change", () => { showCard(); if (state.file) analyse(state.file); });
  const token = $("token");
  token.value = sessionStorage.getItem("cxrzoo-token") || "";
  token.addEventListener("change", () => { sessionStorage.setItem("cxrzoo-token", token.value); loadModels(); });
  loadModels();
}

setUp();
