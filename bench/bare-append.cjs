// The floor for an append: what Node must do at the least (read stdin, append it to a file,
// fsync), with none of ticket-mail's parsing, routing, locking, index or log.
'use strict';
const { closeSync, constants, fsyncSync, openSync, readSync, writeSync } = require('node:fs');
const buffer = Buffer.alloc(1 << 16);
let length = 0;
for (let got; (got = readSync(0, buffer, length, buffer.length - length, null)) > 0;) length += got;
const fd = openSync(process.argv[2], constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
writeSync(fd, buffer, 0, length);
fsyncSync(fd);
closeSync(fd);
