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
