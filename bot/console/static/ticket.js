// The console's ticket page: a canned reply chosen in a <select data-fill="ID"> fills the
// textarea #ID (the commissioner may still edit it), then the list returns to its prompt.
"use strict";
// The conversation opens at its latest line.
document.addEventListener("DOMContentLoaded", () => {
  for (const list of document.querySelectorAll("ol.conversation")) {
    list.scrollTop = list.scrollHeight;
  }
  for (const select of document.querySelectorAll("select[data-fill]")) {
    select.addEventListener("change", () => {
      const target = document.getElementById(select.dataset.fill);
      if (!target || !select.value) return;
      target.value = select.value;
      select.selectedIndex = 0;
      target.focus();
    });
  }
});
