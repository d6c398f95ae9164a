// Small conveniences for the back office; every page works without them. No inline script (strict CSP).
"use strict";

const search = document.getElementById("search");
if (search) {
  const filter = () => {
    const needle = search.value.trim().toLowerCase();
    for (const row of document.querySelectorAll("#entities tbody tr[data-alias]")) {
      const text = row.textContent.toLowerCase();
      row.hidden = needle !== "" && !text.includes(needle);
    }
  };
  search.addEventListener("input", filter);
  filter();
}

const deletable = document.querySelector("input[name=is_deletable]");
if (deletable) {
  deletable.addEventListener("change", () => {
    if (deletable.checked && !window.confirm("Allow clients with the delete scope to delete rows?")) {
      deletable.checked = false;
    }
  });
}

// A field dxapi keeps at the database clock (autoValue) is never written by clients: its create, edit and
// required boxes are cleared and locked while a value is chosen (the save would refuse them otherwise).
for (const auto of document.querySelectorAll("#fields select[name$='-auto']")) {
  const prefix = auto.name.slice(0, -"auto".length);
  const boxes = ["creatable", "editable", "required"]
    .map((key) => auto.form.elements.namedItem(prefix + key))
    .filter((box) => box instanceof HTMLInputElement);
  const apply = () => {
    const maintained = auto.value !== "";
    for (const box of boxes) {
      if (maintained) box.checked = false;
      box.disabled = maintained;
    }
  };
  auto.addEventListener("change", apply);
  apply();
}
