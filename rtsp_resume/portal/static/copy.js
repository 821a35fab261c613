// The play page's copy buttons: each puts the text of the field it names on the clipboard.
// The field is selected first, so a browser without clipboard access leaves it ready for
// Ctrl-C.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch {
      button.textContent = document.execCommand("copy") ? "Copied" : "Press Ctrl-C to copy";
    }
  });
}
