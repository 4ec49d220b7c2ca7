// Dedicated worker: reads the event stream (see feed.js) and posts merged batches to the page.
import { Feed } from "./feed.js";

self.addEventListener("message", (e) => {
  if (e.data.type === "connect") {
    new Feed(e.data.origin, e.data.serials, (m) => self.postMessage(m)).connect();
  }
});
