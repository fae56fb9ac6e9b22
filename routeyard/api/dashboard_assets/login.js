// The login form: trade the admin key for an HttpOnly session cookie, then load the dashboard.
// The key lives only in the input until the request is sent; the input is cleared at once.
const form = document.getElementById("login-form");
const input = document.getElementById("key");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = input.value;
  input.value = "";
  error.textContent = "";
  let answer;
  try {
    answer = await fetch("/dashboard/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-routeyard-dashboard": "1" },
      body: JSON.stringify({ key }),
    });
  } catch (failure) {
    error.textContent = `The server cannot be reached: ${failure}`;
    return;
  }
  if (answer.ok) {
    window.location.replace("/dashboard");
    return;
  }
  const body = await answer.json().catch(() => null);
  error.textContent = body?.error?.message ?? `Refused (${answer.status}).`;
});
