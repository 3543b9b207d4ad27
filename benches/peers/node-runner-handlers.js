// Handlers for the Node Configurapi peer: the same behaviour as the Rust runner's
// echoHandler and streamHandler (configurapi-handler-ws pack, spec 8.7 and 8.12).
const { Readable } = require('stream');

module.exports = {
  // 200, body = payload ("" when there is none).
  echoHandler: async function echoHandler(event) {
    event.response.statusCode = 200;
    event.response.body = event.payload === undefined ? '' : event.payload;
    return this.continue();
  },

  // `count` text chunks of `chunkBytes` 'x' characters, as a readable stream body
  // (what configurapi-handler-ws's StreamResponse carries).
  streamHandler: async function streamHandler(event, count = 3, chunkBytes = 16) {
    const chunk = 'x'.repeat(Number(chunkBytes));
    const n = Number(count);
    function* chunks() {
      for (let i = 0; i < n; i++) yield chunk;
    }
    event.response.statusCode = 200;
    event.response.body = Readable.from(chunks(), { objectMode: true });
    return this.continue();
  },
};
